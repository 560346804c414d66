package benchmark

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func sampleScaling() Scaling {
	s := Scaling{Net: "deep", Mode: "weak", PerWorkerBatch: 100, MicroBatch: 100, Steps: 10, Warmup: 3, Repeat: 3,
		Synthetic: true, ComputeMs: 20, Cluster: "embedded", Machine: "test machine",
		Emulated: &Link{BitsPerSec: 10e9, LatencyMs: 0.2, How: "tc tbf"}, CoordinatorMsPerAddedWorker: 0.21}
	for i, w := range []int{1, 2, 4} {
		ph := Phases{Compute: 20, Wait: 0.5 * float64(i), Transfer: 1 + float64(i), Reduce: 0.1 * float64(w), Optimizer: 0.4, Broadcast: 0.2 * float64(w)}
		step := ph.Sum()
		s.Points = append(s.Points, Point{Workers: w, Batch: 100 * w, ImagesPerSec: float64(100*w) / step * 1000, StepMs: step,
			StepMsSpread: Spread{Min: step - 1, Max: step + 1, StdDev: 0.7}, PhasesMs: ph,
			CoordinatorMsPerWorker: ph.Coordinator() / float64(w), Speedup: float64(w) * 0.95, Efficiency: 0.95})
	}
	return s
}

// The JSON is the fixed schema and reads back to the same result.
func TestScalingJSONRoundTripAndNames(t *testing.T) {
	s := sampleScaling()
	var buf bytes.Buffer
	if err := WriteScalingJSON(&buf, s); err != nil {
		t.Fatal(err)
	}
	var loose map[string]any
	if err := json.Unmarshal(buf.Bytes(), &loose); err != nil {
		t.Fatal(err)
	}
	pt := loose["points"].([]any)[0].(map[string]any)
	for _, k := range []string{"workers", "imagesPerSec", "stepMs", "phasesMs", "coordinatorMsPerWorker", "efficiency"} {
		if _, ok := pt[k]; !ok {
			t.Errorf("a point has no %q: %v", k, pt)
		}
	}
	for _, k := range []string{"compute", "wait", "transfer", "reduce", "optimizer", "broadcast"} {
		if _, ok := pt["phasesMs"].(map[string]any)[k]; !ok {
			t.Errorf("phasesMs has no %q", k)
		}
	}
	if loose["net"] != "deep" {
		t.Errorf("net %v", loose["net"])
	}
	got, err := ReadScalingJSON(bytes.NewReader(buf.Bytes()))
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("read back %+v, %v; want %+v", got, err, s)
	}
	for _, bad := range []string{`{"net":"deep","gpus":3}`, `{"net":`} {
		if _, err := ReadScalingJSON(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "reading a scaling result") {
			t.Errorf("%s: %v, want an error naming the problem", bad, err)
		}
	}
}

func TestScalingCSVParses(t *testing.T) {
	s := sampleScaling()
	var buf bytes.Buffer
	if err := WriteScalingCSV(&buf, s); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(s.Points)+1 || !reflect.DeepEqual(rows[0], ScalingCSVHeader) || rows[0][0] != "workers" {
		t.Fatalf("rows %v", rows)
	}
	for i, row := range rows[1:] {
		if w, _ := strconv.Atoi(row[0]); w != s.Points[i].Workers {
			t.Errorf("row %d: workers %s", i, row[0])
		}
		for j, cell := range row {
			if _, err := strconv.ParseFloat(cell, 64); err != nil {
				t.Errorf("row %d, %s: %q: %v", i, rows[0][j], cell, err)
			}
		}
		if v, _ := strconv.ParseFloat(row[3], 64); v != s.Points[i].StepMs {
			t.Errorf("row %d: stepMs %s, want %g", i, row[3], s.Points[i].StepMs)
		}
	}
}

func TestScalingTableShowsTheFigures(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteScalingTable(&buf, sampleScaling()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"weak scaling, 100 images per worker per step", "synthetic workers (20 ms", "10 Gbit/s, 0.20 ms", "95.0%", "0.210 ms per added worker", "broadcast"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// The plots are PNGs of the asked size, with something drawn on them.
func TestPlotScalingWritesPNGsOfTheAskedSize(t *testing.T) {
	for _, size := range [][2]int{{640, 400}, {1000, 600}} {
		dir := t.TempDir()
		paths, err := PlotScaling(sampleScaling(), dir, size[0], size[1])
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{filepath.Join(dir, ThroughputPlot), filepath.Join(dir, PhasesPlot)}; !reflect.DeepEqual(paths, want) {
			t.Fatalf("paths %v, want %v", paths, want)
		}
		for _, path := range paths {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if b := img.Bounds(); b.Dx() != size[0] || b.Dy() != size[1] {
				t.Errorf("%s: %v, want %dx%d", path, b, size[0], size[1])
			}
			coloured := 0
			for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 3 {
				for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 3 {
					if r, g, b, _ := img.At(x, y).RGBA(); r != g || g != b {
						coloured++
					}
				}
			}
			if coloured == 0 {
				t.Errorf("%s: no coloured pixel: the data was not drawn", path)
			}
		}
	}
	if _, err := PlotScaling(Scaling{}, t.TempDir(), 640, 400); err == nil {
		t.Error("no points: no error")
	}
	if _, err := PlotScaling(sampleScaling(), t.TempDir(), 50, 400); err == nil {
		t.Error("50 pixels wide: no error")
	}
}
