"""The node agent: from each snapshot, what this node announces and forwards."""
