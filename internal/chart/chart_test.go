package chart

import (
	"math"
	"testing"
)

func TestNiceCeilGivesRoundGridSteps(t *testing.T) {
	for v, want := range map[float64]float64{0: 1, 0.3: 0.5, 1: 1, 1.01: 2, 3: 5, 7: 10, 19: 20, 21: 25, 240: 250, 251: 500, 1001: 2000} {
		if got := niceCeil(v); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
}

func TestNumber(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 12: "12", 2.5: "2.5", 0.126: "0.13", 12500: "12.5k", 3_000_000: "3M", 1_260_000: "1.3M"} {
		if got := Number(v); got != want {
			t.Errorf("Number(%v) = %q, want %q", v, got, want)
		}
	}
	if got := Number(math.NaN()); got != "–" {
		t.Errorf("Number(NaN) = %q", got)
	}
}

func TestStackedBarsAddUpAndStayInTheDrawingArea(t *testing.T) {
	c := Chart{Kind: Stacked, Unit: "runs", Labels: []string{"a", "b", "c"},
		Series: []Series{{Name: "completed", Values: []float64{3, 0, 6}}, {Name: "failed", Values: []float64{1, 2, math.NaN()}}}}
	p := c.Layout()
	if p.Empty {
		t.Fatal("a chart with data is not empty")
	}
	// Zero and missing values draw nothing: two segments for a, one each for b and c.
	if len(p.Rects) != 4 {
		t.Fatalf("rects = %+v, want 4", p.Rects)
	}
	// The axis top is 10 (max stack 6 → nice 10): a's stack of 4 is 40% of the plot height.
	plotH := Height - padTop - padBot
	stackA := p.Rects[0].H + p.Rects[1].H
	if math.Abs(stackA-0.4*plotH) > 0.3 {
		t.Errorf("stack a height = %v, want %v", stackA, 0.4*plotH)
	}
	// The second segment sits on the first.
	if math.Abs(p.Rects[1].Y+p.Rects[1].H-p.Rects[0].Y) > 0.2 {
		t.Errorf("segments not stacked: %+v", p.Rects[:2])
	}
	for _, r := range p.Rects {
		if r.X < padLeft || r.X+r.W > Width-padRt+0.1 || r.Y < padTop-0.1 || r.Y+r.H > p.Base+0.1 {
			t.Errorf("rect outside the plot: %+v", r)
		}
	}
	if p.Rects[0].Title != "a · completed: 3 runs" {
		t.Errorf("title = %q", p.Rects[0].Title)
	}
	if len(p.YTicks) != 5 || p.YTicks[4].Label != "10" || p.YTicks[0].Y != p.Base {
		t.Errorf("ticks = %+v", p.YTicks)
	}
}

func TestLinesBreakAtGapsAndDrawLonePointsAsDots(t *testing.T) {
	nan := math.NaN()
	c := Chart{Kind: Lines, Unit: "ms", Labels: []string{"1", "2", "3", "4", "5"},
		Series: []Series{{Name: "p95", Values: []float64{10, 20, nan, 5, nan}}}}
	p := c.Layout()
	if len(p.Lines) != 1 {
		t.Fatalf("lines = %+v", p.Lines)
	}
	l := p.Lines[0]
	if len(l.Points) != 1 || len(l.Dots) != 1 {
		t.Fatalf("want one stretch and one dot, got %+v", l)
	}
	if l.Dots[0].Title != "4 · p95: 5 ms" {
		t.Errorf("dot title = %q", l.Dots[0].Title)
	}
}

func TestEmptyChartSaysSo(t *testing.T) {
	c := Chart{Kind: Stacked, Labels: []string{"a", "b"}, Series: []Series{{Name: "x", Values: []float64{0, 0}}}}
	if !c.Layout().Empty {
		t.Error("all-zero bars should be empty")
	}
	// A line at 0 (a rate of 0%) is data; a line of gaps is not.
	nan := math.NaN()
	if (Chart{Kind: Lines, Labels: []string{"a", "b"}, Series: []Series{{Name: "x", Values: []float64{0, nan}}}}).Layout().Empty {
		t.Error("a line at 0 is data")
	}
	if !(Chart{Kind: Lines, Labels: []string{"a", "b"}, Series: []Series{{Name: "x", Values: []float64{nan, nan}}}}).Layout().Empty {
		t.Error("a line of gaps is empty")
	}
}

func TestXLabelsThinOutOnLongRanges(t *testing.T) {
	labels := make([]string, 30)
	for i := range labels {
		labels[i] = "d"
	}
	p := Chart{Kind: Stacked, Labels: labels, Series: []Series{{Name: "x", Values: []float64{1}}}}.Layout()
	if len(p.XLabels) > 8 {
		t.Errorf("%d x labels, want at most 8", len(p.XLabels))
	}
}
