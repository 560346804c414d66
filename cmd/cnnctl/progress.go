package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/dpcnn/dpcnn/train"
)

// progressPrinter shows training progress: a bar when out is a terminal,
// plain lines (about ten an epoch, and every evaluation) otherwise.
type progressPrinter struct {
	out        io.Writer
	conditions string // of the training accuracy (job.Spec.TrainAccuracyConditions)
	bar        *progressbar.ProgressBar
}

func newProgressPrinter(out io.Writer, totalSteps int64, conditions string) *progressPrinter {
	return &progressPrinter{out: out, conditions: conditions, bar: terminalBar(out, totalSteps)}
}

// terminalBar is a progress bar of total counts on out when out is a
// terminal; nil otherwise (where plain lines serve a log better).
func terminalBar(out io.Writer, total int64) *progressbar.ProgressBar {
	f, ok := out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(out),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *progressPrinter) report(pr train.Progress) {
	line := fmt.Sprintf("epoch %d/%d step %d/%d loss %.4f %s%s %.0f img/s",
		pr.Epoch, pr.Epochs, pr.Step, pr.StepsPerEpoch, pr.Loss, trainAccuracyText(pr.TrainAccuracy, p.conditions), rateText(pr.LR), pr.ImagesPerSec)
	if p.bar != nil {
		p.bar.Describe(line)
		p.bar.Set64(pr.GlobalStep)
		if pr.Evaluated {
			p.bar.Clear()
			fmt.Fprintf(p.out, "epoch %d: test accuracy %.4f (%s)\n", pr.Epoch, pr.TestAccuracy, pr.Elapsed.Round(time.Second))
		}
		return
	}
	every := max(1, pr.StepsPerEpoch/10)
	if pr.Step%every == 0 || pr.Step == pr.StepsPerEpoch || pr.GlobalStep == pr.Steps {
		eta := time.Duration(0)
		if pr.GlobalStep > 0 {
			eta = time.Duration(float64(pr.Elapsed) / float64(pr.GlobalStep) * float64(pr.Steps-pr.GlobalStep))
		}
		fmt.Fprintf(p.out, "%s eta %s\n", line, eta.Round(time.Second))
	}
	if pr.Evaluated {
		fmt.Fprintf(p.out, "epoch %d: test accuracy %.4f (%s)\n", pr.Epoch, pr.TestAccuracy, pr.Elapsed.Round(time.Second))
	}
}

func (p *progressPrinter) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
