package tree

import "fmt"

// Piece is the sum of one subtree of a step, received whole: a worker's
// result, or a reducer's.
type Piece struct {
	Leaves Subtree
	Sum    []float32
}

// ReducePieces adds pieces, consecutive nodes of the tree over leaves
// leaves that together cover the node node, into node's sum: exactly the
// partial sum ReduceTree forms at that node, so that a reducer (a process
// that adds the sums of the workers below it before passing them up)
// changes no bit of the step's gradient. A piece that is node itself is
// returned as it is; otherwise the sum is written into buffers that alloc
// gives (one per addition), and the pieces are only read.
func ReducePieces(node Subtree, pieces []Piece, leaves int, alloc func() []float32) ([]float32, error) {
	if !node.IsNode(leaves) {
		return nil, fmt.Errorf("tree: %v is not a node of the tree over %d leaves", node, leaves)
	}
	at := node.Lo
	for i, p := range pieces {
		if p.Leaves.Lo != at || !p.Leaves.IsNode(leaves) || p.Leaves.Hi > node.Hi {
			return nil, fmt.Errorf("tree: piece %d, %v: not the node that follows leaf %d inside %v", i, p.Leaves, at, node)
		}
		if i > 0 && len(p.Sum) != len(pieces[0].Sum) {
			return nil, fmt.Errorf("tree: piece %d has %d values, piece 0 %d", i, len(p.Sum), len(pieces[0].Sum))
		}
		at = p.Leaves.Hi
	}
	if at != node.Hi {
		return nil, fmt.Errorf("tree: the pieces cover [%d, %d) of %v", node.Lo, at, node)
	}
	span := 1
	for span < node.Len() {
		span *= 2
	}
	sum, rest := reducePieces(node.Lo, span, pieces, leaves, alloc)
	if len(rest) != 0 {
		panic("tree: ReducePieces left pieces over") // the checks above rule it out
	}
	return sum, nil
}

// reducePieces forms the sum of the node of span leaves at lo from the
// pieces that start there, and returns it with the pieces after it. A
// node's sum is its left half's plus its right half's, as ReduceTree adds
// them (leaf lo absorbs leaf lo + span/2); float32 addition commutes, so
// writing left + right into a new buffer gives the same bits as adding
// right into left.
func reducePieces(lo, span int, pieces []Piece, leaves int, alloc func() []float32) ([]float32, []Piece) {
	hi := min(lo+span, leaves)
	if p := pieces[0]; p.Leaves.Lo == lo && p.Leaves.Hi == hi {
		return p.Sum, pieces[1:]
	}
	half := span / 2
	left, rest := reducePieces(lo, half, pieces, leaves, alloc)
	if lo+half >= hi {
		return left, rest // the ragged last node: its right half is empty
	}
	right, rest := reducePieces(lo+half, half, rest, leaves, alloc)
	out := alloc()[:len(left)]
	for j := range out {
		out[j] = left[j] + right[j]
	}
	return out, rest
}
