// Cilium's Maglev table construction (pkg/maglev), written for this benchmark from a
// description of the algorithm, so herald's build can be timed against it in one run.
// Standard library only; compare.py builds it with Debian's golang and drives it.
//
// What Cilium does, and this program repeats:
//   - backends sorted by name; each name hashed with 128-bit MurmurHash3 (x64 variant,
//     32-bit seed from the cluster's hash seed): offset = h1 mod M, skip = h2 mod (M-1) + 1;
//   - the whole N x M permutation is written out first (N rows of M slots), split into
//     batches over runtime.NumCPU() goroutines, into a package-level slice that is kept and
//     only grown between calls;
//   - M rounds: in round n, backend n mod N takes its next unclaimed slot. With weights
//     (weight sum / N > 1) a backend whose (n+1) x weight is below its counter passes the
//     turn to the next backend, and the taker's counter grows by the weight sum.
//
// Input on stdin (JSON): {"m": M, "seed": uint32, "repeats": R, "cases": [{"names": [...],
// "weights": [...], "victims": [...]}]}. Output on stdout (JSON): per case the build times
// in nanoseconds and, per victim, the fraction of slots whose owner changed when that
// backend is removed.
package main

import (
	"encoding/json"
	"math/bits"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"
)

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

func le64(b []byte) uint64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// murmur3x64 is MurmurHash3_x64_128 (Austin Appleby's public-domain algorithm).
func murmur3x64(data []byte, seed uint32) (uint64, uint64) {
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	h1, h2 := uint64(seed), uint64(seed)
	blocks := len(data) / 16
	for i := 0; i < blocks; i++ {
		k1, k2 := le64(data[i*16:i*16+8]), le64(data[i*16+8:i*16+16])
		h1 ^= bits.RotateLeft64(k1*c1, 31) * c2
		h1 = (bits.RotateLeft64(h1, 27)+h2)*5 + 0x52dce729
		h2 ^= bits.RotateLeft64(k2*c2, 33) * c1
		h2 = (bits.RotateLeft64(h2, 31)+h1)*5 + 0x38495ab5
	}
	tail := data[blocks*16:]
	if len(tail) > 8 {
		h2 ^= bits.RotateLeft64(le64(tail[8:])*c2, 33) * c1
	}
	if len(tail) > 0 {
		low := tail
		if len(low) > 8 {
			low = low[:8]
		}
		h1 ^= bits.RotateLeft64(le64(low)*c1, 31) * c2
	}
	h1 ^= uint64(len(data))
	h2 ^= uint64(len(data))
	h1 += h2
	h2 += h1
	h1, h2 = fmix64(h1), fmix64(h2)
	h1 += h2
	h2 += h1
	return h1, h2
}

var permutation []uint64

func fillPermutation(names []string, m uint64, seed uint32) []uint64 {
	count := len(names)
	if need := uint64(count) * m; need > uint64(len(permutation)) {
		permutation = make([]uint64, need)
	}
	workers := runtime.NumCPU()
	batch := count / workers
	if batch == 0 {
		batch = count
	}
	var wg sync.WaitGroup
	for from := 0; from < count; from += batch {
		to := from + batch
		if to > count {
			to = count
		}
		wg.Add(1)
		go func(from, to int) {
			defer wg.Done()
			for i := from; i < to; i++ {
				h1, h2 := murmur3x64([]byte(names[i]), seed)
				offset, skip := h1%m, h2%(m-1)+1
				row := permutation[i*int(m) : (i+1)*int(m)]
				row[0] = offset
				for j := uint64(1); j < m; j++ {
					row[j] = (row[j-1] + skip) % m
				}
			}
		}(from, to)
	}
	wg.Wait()
	return permutation[:count*int(m)]
}

// lookupTable returns, for every slot, the index of its backend in sorted order, and that order.
func lookupTable(weights map[string]uint16, m uint64, seed uint32) ([]int, []string) {
	names := make([]string, 0, len(weights))
	counter := make(map[string]float64, len(weights))
	count := len(weights)
	var weightSum uint64
	for name, weight := range weights {
		names = append(names, name)
		weightSum += uint64(weight)
		counter[name] = float64(weight) / float64(count)
	}
	sort.Strings(names)
	perm := fillPermutation(names, m, seed)
	next := make([]int, count)
	entry := make([]int, m)
	for j := range entry {
		entry[j] = -1
	}
	weighted := weightSum/uint64(count) > 1
	for n := uint64(0); n < m; n++ {
		i := int(n) % count
		if weighted {
			for (n+1)*uint64(weights[names[i]]) < uint64(counter[names[i]]) {
				i = (i + 1) % count
			}
			counter[names[i]] += float64(weightSum)
		}
		c := perm[i*int(m)+next[i]]
		for entry[c] >= 0 {
			next[i]++
			c = perm[i*int(m)+next[i]]
		}
		entry[c] = i
		next[i]++
	}
	return entry, names
}

func owners(weights map[string]uint16, m uint64, seed uint32) []string {
	entry, names := lookupTable(weights, m, seed)
	result := make([]string, len(entry))
	for slot, i := range entry {
		result[slot] = names[i]
	}
	return result
}

type caseIn struct {
	Names   []string `json:"names"`
	Weights []uint16 `json:"weights"`
	Victims []string `json:"victims"`
}

type caseOut struct {
	N       int       `json:"n"`
	BuildNs []int64   `json:"build_ns"`
	Moved   []float64 `json:"moved"`
}

func main() {
	var in struct {
		M       uint64   `json:"m"`
		Seed    uint32   `json:"seed"`
		Repeats int      `json:"repeats"`
		Cases   []caseIn `json:"cases"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	var out struct {
		Go     string    `json:"go"`
		NumCPU int       `json:"num_cpu"`
		Cases  []caseOut `json:"cases"`
	}
	out.Go, out.NumCPU = runtime.Version(), runtime.NumCPU()
	for _, c := range in.Cases {
		weights := make(map[string]uint16, len(c.Names))
		for i, name := range c.Names {
			weights[name] = c.Weights[i]
		}
		result := caseOut{N: len(c.Names)}
		lookupTable(weights, in.M, in.Seed) // the first call grows the kept permutation slice
		for r := 0; r < in.Repeats; r++ {
			start := time.Now()
			lookupTable(weights, in.M, in.Seed)
			result.BuildNs = append(result.BuildNs, time.Since(start).Nanoseconds())
		}
		before := owners(weights, in.M, in.Seed)
		for _, victim := range c.Victims {
			rest := make(map[string]uint16, len(weights))
			for name, weight := range weights {
				if name != victim {
					rest[name] = weight
				}
			}
			after := owners(rest, in.M, in.Seed)
			moved := 0
			for slot := range before {
				if before[slot] != after[slot] {
					moved++
				}
			}
			result.Moved = append(result.Moved, float64(moved)/float64(in.M))
		}
		out.Cases = append(out.Cases, result)
	}
	if err := json.NewEncoder(os.Stdout).Encode(&out); err != nil {
		panic(err)
	}
}
