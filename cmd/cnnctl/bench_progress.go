package main

import (
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
)

// benchProgress shows a benchmark's runs done: a bar when out is a
// terminal, a plain line per run otherwise.
type benchProgress struct {
	out io.Writer
	bar *progressbar.ProgressBar
}

func newBenchProgress(out io.Writer, runs int) *benchProgress {
	return &benchProgress{out: out, bar: terminalBar(out, int64(runs))}
}

// done counts a run, described by line.
func (p *benchProgress) done(line string) {
	if p.bar != nil {
		p.bar.Describe(line)
		p.bar.Add(1)
		return
	}
	fmt.Fprintln(p.out, line)
}

func (p *benchProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
