package model

import (
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/philox"
)

// The same-bits guarantee: training on the CPU backend gives bit-identical
// parameters whatever kernels the processor runs (AVX-512, AVX2 with FMA,
// plain Go; amd64 or arm64). TestSameBitsEveryPath trains each built-in
// network a few steps and compares the parameters' hash with a golden value
// committed here, so every build checks the same numbers: the default one,
// -tags noasm, GOARCH=arm64 under qemu-user. On amd64 it also runs itself
// again with the faster kernels switched off through GODEBUG (which
// golang.org/x/sys/cpu honours), so that one go test proves every path this
// processor has.

// sameBitsGolden is the SHA-256 of the parameters (Checkpoint.ParamsSHA256)
// of each network after sameBitsTrain.
var sameBitsGolden = map[string]string{
	"deep":   "4a54c01b35901096aa00ea62a9ae141b41165ea02f877f74a4dc93be99035c0d",
	"simple": "bdb52ec2363c8b19df83bf995d69a330bd16b939d8639a80930385beb82ece39",
	"lenet":  "3529b7fea5ace859342294fea08734598e997f7bf799e8c1d2633b36f4034f90",
}

// sameBitsRuns are the networks, batch sizes and steps trained: a few
// seconds in all on the plain-Go kernels.
var sameBitsRuns = []struct {
	net          string
	batch, steps int
}{{"deep", 8, 3}, {"simple", 16, 3}, {"lenet", 16, 3}}

// sameBitsChildEnv marks a run of the test binary started by
// TestSameBitsEveryPath, with the value naming the GODEBUG setting.
const sameBitsChildEnv = "DPCNN_SAMEBITS_CHILD"

// sameBitsForced are the GODEBUG settings that force the slower paths on
// amd64: AVX2 without AVX-512, and plain Go.
var sameBitsForced = []string{"cpu.avx512f=off", "cpu.avx512f=off,cpu.avx2=off,cpu.fma=off"}

func TestSameBitsEveryPath(t *testing.T) {
	path := kernels.CPUKernelPath()
	t.Logf("%s/%s, %s kernels", runtime.GOOS, runtime.GOARCH, path)
	for _, r := range sameBitsRuns {
		got := sameBitsTrain(t, r.net, r.batch, r.steps)
		if want := sameBitsGolden[r.net]; got != want {
			t.Errorf("%s on the %s kernels (%s/%s): parameters hash %s, want %s", r.net, path, runtime.GOOS, runtime.GOARCH, got, want)
		}
	}
	if os.Getenv(sameBitsChildEnv) != "" {
		return
	}
	if runtime.GOARCH != "amd64" {
		if path == "go" {
			t.Logf("%s: plain Go, the one kernel path of this build; the golden hashes compare it with the amd64 paths", runtime.GOARCH)
		} else {
			t.Logf("%s: the %s kernels, which no GODEBUG setting switches off (TestCPUPathsAgree in package kernels compares them with plain Go); the golden hashes compare them with the amd64 paths", runtime.GOARCH, path)
		}
		return
	}
	// The other paths: this test again in a child with GODEBUG set.
	seen := map[string]string{path: "the default"}
	for _, godebug := range sameBitsForced {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSameBitsEveryPath$", "-test.v")
		cmd.Env = append(os.Environ(), "GODEBUG="+godebug, sameBitsChildEnv+"="+godebug)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("GODEBUG=%s: %v\n%s", godebug, err, out)
			continue
		}
		child := sameBitsChildPath(string(out))
		if child == "" {
			t.Errorf("GODEBUG=%s: the child did not say which kernels it ran:\n%s", godebug, out)
			continue
		}
		if first, ok := seen[child]; ok {
			t.Logf("GODEBUG=%s runs the %s kernels, as %s setting does: this processor and build have no other path to compare", godebug, child, first)
		} else {
			t.Logf("GODEBUG=%s: the %s kernels give the golden hashes too", godebug, child)
		}
		seen[child] = "the GODEBUG=" + godebug
	}
}

// sameBitsChildPath finds the kernel path a child run logged.
func sameBitsChildPath(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, ", "); i >= 0 && strings.HasSuffix(line, " kernels") && strings.Contains(line, runtime.GOOS+"/") {
			return strings.TrimSuffix(line[i+2:], " kernels")
		}
	}
	return ""
}

// sameBitsTrain trains the built-in network net for steps steps of batch
// synthetic samples on the CPU backend with Adam and returns the hash of
// its parameters. Everything it starts from is defined bit for bit without
// math.Log and friends (which may differ in the last bit between
// platforms): the initial weights are uniform draws from Philox streams
// scaled by √3 times the init's standard deviation, and the images are
// Philox bytes, three in five of them black like MNIST's background.
func sameBitsTrain(t *testing.T, net string, batch, steps int) string {
	t.Helper()
	spec, err := Builtin(net)
	if err != nil {
		t.Fatal(err)
	}
	b := kernels.NewCPU(2)
	defer b.Close()
	n, err := New(spec, kernels.Backend[float32](b), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range n.Params() {
		s := philox.NewStream(7, 0x53414d45, uint32(i), 0) // "SAME"
		r := math.Sqrt(3) * n.initStd[i]
		for j := range p.Value {
			p.Value[j] = float32(float64(2*philox.ToUniform(s.Uint32(uint32(j)))-1) * r)
		}
	}
	opt, err := NewOptimizer(OptimizerSpec{Type: OptAdam}, n.Params(), Horizon{})
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, batch*n.InputSize())
	labels := make([]int32, batch)
	samples := make([]int64, batch)
	for step := range steps {
		data := philox.NewStream(7, 0x44415441, uint32(step), 0) // "DATA"
		for i := range x {
			v := data.Uint32(uint32(i)) & 0xff
			if v < 153 {
				x[i] = 0
			} else {
				x[i] = float32(v) / 255
			}
		}
		for i := range labels {
			labels[i] = int32(data.Uint32(uint32(len(x)+i)) % uint32(n.Classes()))
			samples[i] = int64(step*batch + i)
		}
		mustLoss(t, n, x, labels, samples, RunContext{Train: true, Seed: 7, Step: uint64(step)}, 1/float32(batch))
		mustBackward(t, n)
		opt.Update(b, n.Params())
	}
	c := Checkpoint{Params: n.ExportParams()}
	return c.ParamsSHA256()
}
