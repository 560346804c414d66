package model

import (
	"math"

	"github.com/dpcnn/dpcnn/philox"
)

// initStreamTag is the first word of the Philox streams that initial
// weights are drawn from; it keeps them apart from every other stream of a
// job with the same seed (dropout streams use that word for the step).
const initStreamTag = 0x494e4954 // "INIT"

// InitParams sets every weight to a draw from N(0, std²), with the std its
// layer's init asks for, every bias to zero, and batch norms to the
// identity: scale and running variance 1, shift and running mean 0. Parameter i draws from the
// Philox stream keyed by (seed, "INIT", i): each block of four words of the
// stream gives four normals by Box–Muller, computed in float64 and then
// rounded to T: the same seed gives the same parameters run after run, and
// the float32 ones are the float64 ones rounded. (Across CPU architectures
// math.Log may differ in the last bit, which is why the coordinator
// initialises once and sends the values.)
func (n *Network[T]) InitParams(seed uint64) {
	for i, p := range n.params {
		std := n.initStd[i]
		if std == 0 {
			for j := range p.Value {
				p.Value[j] = T(n.initConst[i])
			}
			continue
		}
		s := philox.NewStream(seed, initStreamTag, uint32(i), 0)
		var z [4]float64
		for j := range p.Value {
			if j%4 == 0 {
				b := s.Block4(uint32(j / 4))
				z[0], z[1] = boxMuller(b[0], b[1])
				z[2], z[3] = boxMuller(b[2], b[3])
			}
			p.Value[j] = T(std * z[j%4])
		}
	}
}

// boxMuller turns two random words into two independent standard
// normals. 1−u keeps the logarithm's argument in (0, 1].
func boxMuller(a, b uint32) (z0, z1 float64) {
	u1 := 1 - philox.ToUniform(a)
	u2 := philox.ToUniform(b)
	r := math.Sqrt(-2 * math.Log(u1))
	sin, cos := math.Sincos(2 * math.Pi * u2)
	return r * cos, r * sin
}
