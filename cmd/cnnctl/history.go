package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/train"
	"github.com/dpcnn/dpcnn/viz"
)

// A run's history.jsonl is a header line, then one line of JSON a
// progress report (a training step), for `cnnctl viz curves`:
//
//	{"format":"dpcnn-history-v1","trainAccuracyConditions":"dropout on"}
//	{"step":1,"epoch":1,"elapsedSeconds":0.0213,"loss":2.3051,"trainAccuracy":0.08}
//	{"step":4,"epoch":1,"elapsedSeconds":0.0851,"loss":1.9012,"trainAccuracy":0.42,"lr":0.001,"testAccuracy":0.57}
//
// testAccuracy is there on the steps after which the model was evaluated;
// lr, the rate the step applied, where the run reported it.
// A loss or accuracy that is not a finite number (a diverged run) is
// null, as JSON has no NaN. Each line is written as its report arrives,
// so the file of a run still training can be drawn too.
const (
	historyFile   = "history.jsonl"
	historyFormat = "dpcnn-history-v1"
)

type historyHeader struct {
	Format                  string `json:"format"`
	TrainAccuracyConditions string `json:"trainAccuracyConditions"`
}

type historyLine struct {
	Step           int64    `json:"step"`
	Epoch          int64    `json:"epoch"`
	ElapsedSeconds float64  `json:"elapsedSeconds"`
	Loss           *float64 `json:"loss"`
	TrainAccuracy  *float64 `json:"trainAccuracy"`
	LR             float64  `json:"lr,omitempty"`
	TestAccuracy   *float64 `json:"testAccuracy,omitempty"`
}

// finite is x, or nil (JSON null) for NaN and infinities.
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// orNaN reads back what finite wrote.
func orNaN(x *float64) float64 {
	if x == nil {
		return math.NaN()
	}
	return *x
}

// historyWriter writes a run's history.jsonl as the reports come. The
// progress callbacks it serves cannot fail, so it keeps its first error
// for close.
type historyWriter struct {
	path string
	f    *os.File
	err  error
	seq  historySeq
}

// createHistory creates (or replaces: a new run of the same folder) the
// history file at path, with the training accuracy's conditions in its
// header.
func createHistory(path, conditions string) (*historyWriter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	h := &historyWriter{path: path, f: f}
	h.writeLine(historyHeader{Format: historyFormat, TrainAccuracyConditions: conditions})
	if h.err != nil {
		f.Close()
		return nil, h.err
	}
	return h, nil
}

func (h *historyWriter) writeLine(v any) {
	if h.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err == nil {
		// One write a line, unbuffered: a reader of a run still going
		// sees whole lines, and an interrupted run keeps what it did.
		_, err = h.f.Write(append(b, '\n'))
	}
	if err != nil {
		h.err = fmt.Errorf("write %s: %w", h.path, err)
	}
}

// add writes p unless it adds nothing to what was written (see
// historySeq.next).
func (h *historyWriter) add(p viz.Point) {
	p, ok := h.seq.next(p)
	if !ok {
		return
	}
	l := historyLine{Step: p.Step, Epoch: p.Epoch, ElapsedSeconds: p.Elapsed.Seconds(),
		Loss: finite(p.Loss), TrainAccuracy: finite(p.TrainAccuracy), LR: p.LR}
	if p.Evaluated {
		l.TestAccuracy = finite(p.TestAccuracy)
	}
	h.writeLine(l)
}

// addTrain writes an in-process run's report.
func (h *historyWriter) addTrain(p train.Progress) {
	h.add(viz.Point{Step: p.GlobalStep, Epoch: p.Epoch, Elapsed: p.Elapsed, Loss: p.Loss,
		TrainAccuracy: p.TrainAccuracy, LR: p.LR, Evaluated: p.Evaluated, TestAccuracy: p.TestAccuracy})
}

// addEvent writes a job's progress event; other events are no history.
func (h *historyWriter) addEvent(ev *dpcnnv1.JobEvent) {
	if p := ev.GetProgress(); p != nil {
		h.add(progressPoint(p))
	}
}

// close closes the file and returns the first error of the writes.
// Closing again returns the same.
func (h *historyWriter) close() error {
	if h.f != nil {
		if err := h.f.Close(); err != nil && h.err == nil {
			h.err = fmt.Errorf("write %s: %w", h.path, err)
		}
		h.f = nil
	}
	return h.err
}

// historySeq puts progress reports in the order of a history.
type historySeq struct {
	last   viz.Point
	have   bool
	offset time.Duration // added to the reports' elapsed time
}

// next says whether p belongs in the history after the points before it:
// a later step, or the last one's step again now with its evaluation.
// Anything else is a report seen twice (a watch resumed on a new leader
// replays the latest one) or a step computed again after a restart from
// an older checkpoint, whose first computation is kept so the steps only
// go forward. It returns p with its elapsed time going forward too: a
// job's clock starts again at zero when a new leader resumes it, so the
// time after a restart is counted on from the last report before it.
func (q *historySeq) next(p viz.Point) (viz.Point, bool) {
	if q.have && !(p.Step > q.last.Step || p.Step == q.last.Step && p.Evaluated && !q.last.Evaluated) {
		return p, false
	}
	if q.have && p.Elapsed+q.offset < q.last.Elapsed {
		q.offset = q.last.Elapsed - p.Elapsed
	}
	p.Elapsed += q.offset
	q.last, q.have = p, true
	return p, true
}

// progressPoint is a job's progress report as a point. A report of an
// evaluation alone, with no step of its own, has epoch 0.
func progressPoint(p *dpcnnv1.JobProgress) viz.Point {
	pt := viz.Point{Step: p.GlobalStep, Epoch: p.Epoch, Elapsed: time.Duration(p.ElapsedNanos),
		Loss: p.Loss, TrainAccuracy: p.TrainAccuracy, LR: p.LearningRate}
	if e := p.Evaluation; e != nil {
		pt.Evaluated, pt.TestAccuracy = true, e.TestAccuracy
	}
	return pt
}

// historyOfEvents is a job's history from its events, oldest first: the
// progress reports among them, in the order of historySeq. A coordinator
// retains only the reports that carry an evaluation, so a job's history
// has a point an evaluation (and latest, its latest report, when
// given).
func historyOfEvents(events []*dpcnnv1.JobEvent, latest *dpcnnv1.JobProgress, conditions string) viz.History {
	h := viz.History{TrainAccuracyConditions: conditions}
	var seq historySeq
	add := func(p *dpcnnv1.JobProgress) {
		if pt, ok := seq.next(progressPoint(p)); ok {
			h.Points = append(h.Points, pt)
		}
	}
	for _, ev := range events {
		if p := ev.GetProgress(); p != nil {
			add(p)
		}
	}
	if latest != nil && latest.GlobalStep > 0 {
		add(latest)
	}
	return h
}

// readHistory reads a history.jsonl. A line that is not what
// createHistory writes is an error naming the file and the line.
func readHistory(path string) (viz.History, error) {
	var h viz.History
	f, err := os.Open(path)
	if err != nil {
		return h, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	header := false
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields() // a file of something else fails, not draws nothing
		if !header {
			var hd historyHeader
			if err := dec.Decode(&hd); err != nil || hd.Format != historyFormat {
				return h, fmt.Errorf("%s:%d: not a training history: want a first line {\"format\":%q,...} (cnnctl train writes %s)",
					path, n, historyFormat, historyFile)
			}
			h.TrainAccuracyConditions, header = hd.TrainAccuracyConditions, true
			continue
		}
		var l historyLine
		if err := dec.Decode(&l); err != nil {
			return h, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if dec.More() {
			return h, fmt.Errorf("%s:%d: more than one JSON value on the line", path, n)
		}
		if l.Step < 0 || l.Epoch < 0 || l.ElapsedSeconds < 0 {
			return h, fmt.Errorf("%s:%d: step %d, epoch %d, %gs elapsed: none may be negative", path, n, l.Step, l.Epoch, l.ElapsedSeconds)
		}
		p := viz.Point{Step: l.Step, Epoch: l.Epoch, Elapsed: time.Duration(l.ElapsedSeconds * float64(time.Second)),
			Loss: orNaN(l.Loss), TrainAccuracy: orNaN(l.TrainAccuracy), LR: l.LR}
		if l.TestAccuracy != nil {
			p.Evaluated, p.TestAccuracy = true, *l.TestAccuracy
		}
		h.Points = append(h.Points, p)
	}
	if err := sc.Err(); err != nil {
		return h, fmt.Errorf("%s: %w", path, err)
	}
	if !header {
		return h, fmt.Errorf("%s: empty: not a training history", path)
	}
	if len(h.Points) == 0 {
		return h, errors.New(path + ": no progress reports yet (the run has not finished a step)")
	}
	return h, nil
}
