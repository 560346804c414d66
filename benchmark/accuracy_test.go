package benchmark

import (
	"bytes"
	"encoding/csv"
	"reflect"
	"strings"
	"testing"
)

// Summarize counts the runs, and the olympic mean drops the fastest and
// the slowest reached run; runs not reached count apart.
func TestAccuracySummarizeAndRoundTrip(t *testing.T) {
	a := Accuracy{Net: "deep", Target: 0.99, Cluster: "embedded", Runs: []AccuracyRun{
		{Seed: 1, Reached: true, Seconds: 10, ParamsSHA256: "aa"},
		{Seed: 2, Reached: true, Seconds: 30},
		{Seed: 3, Reached: false, Seconds: 99},
		{Seed: 4, Reached: true, Seconds: 14, Curve: []AccuracyPoint{{Seconds: 7, Step: 600, Accuracy: 0.98}, {Seconds: 14, Step: 1200, Accuracy: 0.991}}},
		{Seed: 5, Reached: true, Seconds: 16},
	}}
	a.Summarize()
	if a.Reached != 4 || a.NotReached != 1 || a.OlympicMeanSeconds != 15 || a.Spread.Min != 10 || a.Spread.Max != 30 {
		t.Fatalf("summary %+v", a)
	}
	var buf bytes.Buffer
	if err := WriteAccuracyJSON(&buf, a); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAccuracyJSON(&buf)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if _, err := ReadAccuracyJSON(strings.NewReader(`{"net":"deep","speed":1}`)); err == nil {
		t.Error("an unknown field read without an error")
	}
	buf.Reset()
	if err := WriteAccuracyCSV(&buf, a); err != nil {
		t.Fatal(err)
	}
	if rows, err := csv.NewReader(&buf).ReadAll(); err != nil || len(rows) != 6 || rows[3][1] != "false" {
		t.Fatalf("csv %v, %v", rows, err)
	}
	buf.Reset()
	WriteAccuracyTable(&buf, a)
	if !strings.Contains(buf.String(), "4 of 5 runs reached 0.9900; olympic mean 15.0 s") {
		t.Errorf("table:\n%s", buf.String())
	}
	if _, err := PlotAccuracy(a, t.TempDir(), 640, 400); err != nil {
		t.Error(err)
	}
	var none Accuracy
	none.Summarize()
	if none.OlympicMeanSeconds != 0 {
		t.Errorf("no runs: olympic mean %g", none.OlympicMeanSeconds)
	}
}
