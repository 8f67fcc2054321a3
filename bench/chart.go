package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// chart draws requests per second of every target and method, one bar per
// connection count.
func chart(r Report, path string) error {
	var labels []string
	index := map[string]int{}
	for _, x := range r.Results {
		label := x.label()
		if _, ok := index[label]; !ok {
			index[label] = len(labels)
			labels = append(labels, label)
		}
	}
	byConns := map[int]plotter.Values{}
	var conns []int
	for _, x := range r.Results {
		if _, ok := byConns[x.Conns]; !ok {
			byConns[x.Conns] = make(plotter.Values, len(labels))
			conns = append(conns, x.Conns)
		}
		byConns[x.Conns][index[x.label()]] = x.RPS
	}

	p := plot.New()
	p.Title.Text = fmt.Sprintf("userattrs benchmark, %d cores, %s", r.Cores, r.Date.Format("2006-01-02 15:04 MST"))
	p.Y.Label.Text = "requests per second"
	width := vg.Points(14)
	palette := []color.Color{color.RGBA{R: 70, G: 130, B: 180, A: 255}, color.RGBA{R: 230, G: 120, B: 40, A: 255},
		color.RGBA{R: 90, G: 160, B: 90, A: 255}, color.RGBA{R: 150, G: 90, B: 160, A: 255}}
	for i, c := range conns {
		bars, err := plotter.NewBarChart(byConns[c], width)
		if err != nil {
			return err
		}
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(float64(i)-float64(len(conns)-1)/2) * width
		p.Add(bars)
		p.Legend.Add(fmt.Sprintf("%d connection(s)", c), bars)
	}
	p.Legend.Top = true
	p.NominalX(labels...)
	p.X.Tick.Label.Rotation = 0.35
	p.X.Tick.Label.XAlign = -0.9
	p.X.Tick.Label.YAlign = -1
	return p.Save(8*vg.Centimeter+3*vg.Centimeter*vg.Length(len(labels)), 16*vg.Centimeter, path)
}

func (r Result) label() string { return r.Target + " " + r.Method + "\n" + r.Scenario.label() }
