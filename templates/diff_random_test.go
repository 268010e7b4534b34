package templates

import (
	"math/rand"
	"testing"
)

// TestWordDiffRandom compares many small random lines, with multi-byte and
// invisible characters, and checks that each side's parts join back into its
// line. It also caught memory corruption (see linesToRunes).
func TestWordDiffRandom(t *testing.T) {
	t.Parallel()
	alpha := []string{"a", "b", " ", "-", "é", "x1", ".", "\n", "日本", "\u202e"}
	r := rand.New(rand.NewSource(1))
	gen := func() string {
		n := r.Intn(12)
		s := ""
		for range n {
			s += alpha[r.Intn(len(alpha))]
		}
		return s
	}
	for range 50_000 {
		a, b := gen(), gen()
		f, to := WordDiff(a, b)
		ja, jb := "", ""
		for _, p := range f {
			ja += p.Text
		}
		for _, p := range to {
			jb += p.Text
		}
		if ja != a || jb != b {
			t.Fatalf("%q %q -> %q %q", a, b, ja, jb)
		}
	}
}
