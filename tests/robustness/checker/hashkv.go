package checker

import (
	"fmt"
	"sort"
)

// HashKV checks that every member reported the same HashKV at rev
// (hashes by member name; a member that could not answer is in errs).
func HashKV(rev int64, hashes map[string]uint32, errs map[string]error, v Violations) {
	v.Touch(HashKVEqual)
	var names []string
	for n := range errs {
		v.Add(HashKVEqual, fmt.Sprintf("%s: HashKV at %d: %v", n, rev, errs[n]))
	}
	for n := range hashes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names[min(1, len(names)):] {
		if hashes[n] != hashes[names[0]] {
			v.Add(HashKVEqual, fmt.Sprintf("HashKV at %d: %s %x, %s %x", rev, names[0], hashes[names[0]], n, hashes[n]))
		}
	}
}
