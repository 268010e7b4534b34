package demo

import (
	"fmt"
	"testing"
)

// TestUnusableVerdict: about one run in twelve is flagged, always the same
// ones, each with a valid category and a reason.
func TestUnusableVerdict(t *testing.T) {
	flagged := 0
	for i := range 12_000 {
		id := fmt.Sprintf("0193a1b2-0000-7000-8000-%012d", i)
		c, reason, ok := unusableVerdict(id)
		c2, _, ok2 := unusableVerdict(id)
		if ok != ok2 || c != c2 {
			t.Fatalf("%s: not deterministic", id)
		}
		if ok {
			flagged++
			if !c.Valid() || reason == "" {
				t.Fatalf("%s: category %q reason %q", id, c, reason)
			}
		}
	}
	if flagged < 700 || flagged > 1300 {
		t.Errorf("%d of 12000 flagged, want about 1000", flagged)
	}
}
