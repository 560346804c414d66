package cuda

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/philox"
)

// philoxSection returns the part of KernelSource between the PHILOX
// markers: the random-number code shared by the dropout kernel.
func philoxSection(t *testing.T) string {
	t.Helper()
	begin := strings.Index(KernelSource, "// BEGIN PHILOX")
	end := strings.Index(KernelSource, "// END PHILOX")
	if begin < 0 || end < begin {
		t.Fatalf("%s lacks the BEGIN PHILOX / END PHILOX markers", KernelSourceName)
	}
	return KernelSource[begin:end]
}

// TestPhiloxCMatchesGo compiles the CUDA C of the Philox generator and of
// the dropout decision as plain C with the host's C compiler (the code is
// integer and exact float arithmetic, which C and CUDA define alike), runs
// it on random keys and counters, and requires the same words and masks
// as package philox and kernels.FillDropoutMask. It checks, without a GPU,
// that GPU workers draw the CPU's dropout masks. Skipped without a C
// compiler.
func TestPhiloxCMatchesGo(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		if os.Getenv(RequireCompilerEnv) == "1" {
			t.Fatalf("%s=1 but there is no C compiler (cc)", RequireCompilerEnv)
		}
		t.Skipf("no C compiler (cc) to run the CUDA C Philox on the host (set %s=1 to fail instead)", RequireCompilerEnv)
	}
	const cases = 2000
	rng := rand.New(rand.NewPCG(11, 12))
	type vector struct {
		key   [2]uint32
		ctr   [4]uint32
		ratio float32
		keep  float32
	}
	vectors := make([]vector, cases)
	var in strings.Builder
	for i := range vectors {
		v := vector{
			key:   [2]uint32{rng.Uint32(), rng.Uint32()},
			ctr:   [4]uint32{rng.Uint32(), rng.Uint32(), rng.Uint32(), rng.Uint32()},
			ratio: float32([]float64{0, 0.1, 0.3, 0.5, 0.9}[i%5]),
			keep:  float32([]float64{1, 2, 1 / 0.7}[i%3]),
		}
		if i%7 == 0 {
			v.ctr[0] = uint32(i) // small counters, as dropout uses them
		}
		if i%5 == 3 {
			// Words whose uniform is exactly the ratio (0.5), and just
			// under: the boundary of the keep decision.
			v.ctr[1], v.ctr[2] = 0x80000000|uint32(i%256), 0x7fffff00|uint32(i%256)
		}
		vectors[i] = v
		fmt.Fprintf(&in, "%d %d %d %d %d %d %d %d\n", v.key[0], v.key[1], v.ctr[0], v.ctr[1], v.ctr[2], v.ctr[3],
			math.Float32bits(v.ratio), math.Float32bits(v.keep))
	}

	dir := t.TempDir()
	src := `#include <stdio.h>
#include <string.h>
typedef unsigned int u32;
#define __device__ static
static u32 __umulhi(u32 a, u32 b) { return (u32)(((unsigned long long)a * b) >> 32); }
` + philoxSection(t) + `
static float from_bits(u32 b) { float f; memcpy(&f, &b, 4); return f; }
static u32 to_bits(float f) { u32 b; memcpy(&b, &f, 4); return b; }
int main(void) {
	u32 k0, k1, c[4], ratio, keep;
	while (scanf("%u %u %u %u %u %u %u %u", &k0, &k1, &c[0], &c[1], &c[2], &c[3], &ratio, &keep) == 8) {
		for (int lane = 0; lane < 4; lane++)
			printf("%u ", to_bits(dropout_unit(c[lane], from_bits(ratio), from_bits(keep))));
		philox4x32_10(k0, k1, c);
		printf("%u %u %u %u", c[0], c[1], c[2], c[3]);
		for (int lane = 0; lane < 4; lane++)
			printf(" %u", to_bits(dropout_unit(c[lane], from_bits(ratio), from_bits(keep))));
		printf("\n");
	}
	return 0;
}
`
	if err := os.WriteFile(filepath.Join(dir, "philox.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "philox")
	// -ffp-contract=off: like --fmad=false on the device.
	if out, err := exec.Command(cc, "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Werror", "-o", bin, filepath.Join(dir, "philox.c")).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the C Philox: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	bad := 0
	for i, v := range vectors {
		if !sc.Scan() {
			t.Fatalf("C output ends after %d of %d lines", i, cases)
		}
		var got, mask, direct [4]uint32
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %d %d %d %d %d %d %d %d %d %d", &direct[0], &direct[1], &direct[2], &direct[3],
			&got[0], &got[1], &got[2], &got[3], &mask[0], &mask[1], &mask[2], &mask[3]); err != nil {
			t.Fatalf("line %d %q: %v", i, sc.Text(), err)
		}
		want := philox.Block(v.key, v.ctr)
		d := kernels.DropoutParams{Ratio: float64(v.ratio)}
		for lane := range 4 {
			// The keep decision on the counter words themselves.
			wantDirect := float32(0)
			if kernels.DropoutKeep(d, v.ctr[lane]) {
				wantDirect = v.keep
			}
			if direct[lane] != math.Float32bits(wantDirect) {
				if bad++; bad <= 5 {
					t.Errorf("word %#x ratio %v: C mask %v, Go %v", v.ctr[lane], v.ratio, math.Float32frombits(direct[lane]), wantDirect)
				}
			}
			wantMask := float32(0)
			if kernels.DropoutKeep(d, want[lane]) {
				wantMask = v.keep
			}
			if got[lane] != want[lane] || mask[lane] != math.Float32bits(wantMask) {
				if bad++; bad <= 5 {
					t.Errorf("key %v counter %v lane %d: C gives word %#x mask %v, Go %#x mask %v",
						v.key, v.ctr, lane, got[lane], math.Float32frombits(mask[lane]), want[lane], wantMask)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lanes differ", bad, 4*cases)
	}
}
