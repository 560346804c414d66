package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// benchProgress shows a benchmark's runs done: a bar when out is a
// terminal, a plain line per run otherwise.
type benchProgress struct {
	out io.Writer
	bar *progressbar.ProgressBar
}

func newBenchProgress(out io.Writer, runs int) *benchProgress {
	p := &benchProgress{out: out}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(runs,
			progressbar.OptionSetWriter(out),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
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
