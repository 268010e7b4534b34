// Package chart lays out small time-series charts as SVG geometry for the
// console's dashboard. It only computes coordinates and labels; the
// templates draw them, so a chart is plain server-rendered SVG with no
// script, readable on a phone and printable. Every chart also keeps its
// numbers so that the page can show them as a table (screen readers, and
// anyone who wants the exact figure).
package chart

import (
	"math"
	"strconv"
	"strings"
)

// Kind is how series are drawn.
type Kind int

const (
	// Stacked draws one bar per bucket with the series stacked on it: counts
	// that add up (runs by outcome).
	Stacked Kind = iota
	// Lines draws one line per series: measures that do not add up
	// (percentiles, rates).
	Lines
)

// Series is one named row of values, one per bucket. A NaN value is a
// bucket without data (a line breaks there; a bar is absent).
type Series struct {
	Name   string
	Values []float64
}

// Chart is what a dashboard panel shows.
type Chart struct {
	ID     string // unique on the page, for aria references
	Title  string
	Unit   string // "runs", "ms", "%"
	Kind   Kind
	Labels []string // one per bucket, oldest first
	Series []Series
}

// Fixed drawing area, in SVG user units; the SVG scales to its container.
const (
	Width   = 600.0
	Height  = 220.0
	padLeft = 52.0
	padTop  = 20.0 // room for the axis's unit above the top grid line
	padBot  = 26.0
	padRt   = 8.0
)

// Rect is one bar segment.
type Rect struct {
	X, Y, W, H float64
	Series     int
	Title      string // "label · series: value unit", the segment's tooltip
}

// Line is one series' polyline (several when it has gaps).
type Line struct {
	Series int
	Points []string // "x,y x,y ..." per unbroken stretch
	Dots   []Dot    // a single point between gaps is drawn as a dot
}

// Dot is a lone point.
type Dot struct {
	X, Y  float64
	Title string
}

// Tick is a horizontal grid line with its label.
type Tick struct {
	Y     float64
	Label string
}

// XLabel is a bucket label drawn under the axis.
type XLabel struct {
	X    float64
	Text string
}

// Plot is a chart laid out.
type Plot struct {
	Rects   []Rect
	Lines   []Line
	YTicks  []Tick
	XLabels []XLabel
	Base    float64 // y of the zero line
	// Unit is drawn at the top of the value axis (y UnitY), so that the
	// ticks read as "250 ms" and not as bare numbers.
	Unit  string
	UnitY float64
	Empty bool // no data at all: the template says so instead of drawing
}

// Layout computes the geometry of c.
func (c Chart) Layout() Plot {
	n := len(c.Labels)
	var p Plot
	p.Base = Height - padBot
	p.Unit, p.UnitY = c.Unit, padTop-8
	max := c.max()
	if n == 0 || max <= 0 {
		p.Empty = !c.hasData()
		max = 1
	}
	top := niceCeil(max)
	plotW := Width - padLeft - padRt
	plotH := Height - padTop - padBot
	y := func(v float64) float64 { return round1(p.Base - v/top*plotH) }
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		p.YTicks = append(p.YTicks, Tick{Y: y(v), Label: Number(v)})
	}
	if n == 0 {
		return p
	}
	slot := plotW / float64(n)
	every := int(math.Ceil(float64(n) / 8)) // at most ~8 labels fit a phone
	for i, l := range c.Labels {
		if i%every == 0 {
			p.XLabels = append(p.XLabels, XLabel{X: round1(padLeft + slot*(float64(i)+0.5)), Text: l})
		}
	}
	switch c.Kind {
	case Stacked:
		w := round1(math.Max(slot*0.8, 1))
		for i := range n {
			acc := 0.0
			for s, ser := range c.Series {
				v := at(ser.Values, i)
				if math.IsNaN(v) || v <= 0 {
					continue
				}
				y0, y1 := y(acc), y(acc+v)
				acc += v
				p.Rects = append(p.Rects, Rect{X: round1(padLeft + slot*float64(i) + (slot-w)/2), Y: y1, W: w, H: round1(y0 - y1),
					Series: s, Title: c.Labels[i] + " · " + ser.Name + ": " + Number(v) + " " + c.Unit})
			}
		}
	case Lines:
		for s, ser := range c.Series {
			ln := Line{Series: s}
			var cur []string
			flush := func(i int) {
				switch len(cur) {
				case 0:
				case 1:
					xy := strings.SplitN(cur[0], ",", 2)
					x, _ := strconv.ParseFloat(xy[0], 64)
					yy, _ := strconv.ParseFloat(xy[1], 64)
					ln.Dots = append(ln.Dots, Dot{X: x, Y: yy, Title: c.Labels[i] + " · " + ser.Name + ": " + Number(at(ser.Values, i)) + " " + c.Unit})
				default:
					ln.Points = append(ln.Points, strings.Join(cur, " "))
				}
				cur = nil
			}
			last := -1
			for i := range n {
				v := at(ser.Values, i)
				if math.IsNaN(v) {
					flush(last)
					continue
				}
				cur = append(cur, num(padLeft+slot*(float64(i)+0.5))+","+num(y(v)))
				last = i
			}
			flush(last)
			p.Lines = append(p.Lines, ln)
		}
	}
	return p
}

// hasData reports whether any bucket of any series holds a value: for
// lines any number, 0 included (a rate of 0% is a measurement); for bars a
// count above 0.
func (c Chart) hasData() bool {
	for _, s := range c.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && (v != 0 || c.Kind == Lines) {
				return true
			}
		}
	}
	return false
}

func (c Chart) max() float64 {
	m := 0.0
	for i := range c.Labels {
		if c.Kind == Stacked {
			sum := 0.0
			for _, s := range c.Series {
				if v := at(s.Values, i); !math.IsNaN(v) && v > 0 {
					sum += v
				}
			}
			m = math.Max(m, sum)
			continue
		}
		for _, s := range c.Series {
			if v := at(s.Values, i); !math.IsNaN(v) {
				m = math.Max(m, v)
			}
		}
	}
	return m
}

func at(vs []float64, i int) float64 {
	if i < len(vs) {
		return vs[i]
	}
	return math.NaN()
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten, so that the
// four grid steps have round labels.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*exp >= v*(1-1e-9) {
			return m * exp
		}
	}
	return 10 * exp
}

// Number formats a value for a label: integers without decimals, small
// values with up to two, thousands as "12k", millions as "1.2M".
func Number(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 1e6:
		return trim(strconv.FormatFloat(v/1e6, 'f', 1, 64)) + "M"
	case math.Abs(v) >= 1e4:
		return trim(strconv.FormatFloat(v/1e3, 'f', 1, 64)) + "k"
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return trim(strconv.FormatFloat(v, 'f', 2, 64))
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func num(v float64) string { return strconv.FormatFloat(round1(v), 'f', -1, 64) }
