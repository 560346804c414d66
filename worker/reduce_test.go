package worker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/tree"
)

// A reducer's sum of pieces, handed over in any order, is bit for bit the
// partial sum the pairwise tree forms at the group's node, for ragged
// trees and awkward vector lengths, and it lists every part in leaf order.
func TestAddPiecesKeepsTheTreesBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 15))
	for _, tc := range []struct {
		leaves, lo, hi, n int
		cuts              []tree.Subtree
	}{
		{8, 0, 8, 37, []tree.Subtree{{Lo: 0, Hi: 2}, {Lo: 2, Hi: 3}, {Lo: 3, Hi: 4}, {Lo: 4, Hi: 8}}},
		{5, 0, 4, 1, []tree.Subtree{{Lo: 0, Hi: 1}, {Lo: 1, Hi: 2}, {Lo: 2, Hi: 4}}},
		{13, 8, 13, 129, []tree.Subtree{{Lo: 8, Hi: 12}, {Lo: 12, Hi: 13}}},
	} {
		leafGrads := make([][]float32, tc.leaves)
		for i := range leafGrads {
			leafGrads[i] = make([]float32, tc.n)
			for j := range leafGrads[i] {
				leafGrads[i][j] = float32(rng.NormFloat64()) * float32(1+i*j%7)
			}
		}
		// The reference: the node's sum, every leaf its own.
		wantNode := func() []float32 {
			sub := make([][]float32, tc.hi-tc.lo)
			for i := range sub {
				sub[i] = slices.Clone(leafGrads[tc.lo+i])
			}
			return tree.ReduceSubtree(sub)
		}()
		var pieces []*dpcnnv1.Piece
		for _, c := range tc.cuts {
			sub := make([][]float32, c.Len())
			for i := range sub {
				sub[i] = slices.Clone(leafGrads[c.Lo+i])
			}
			sum := tree.ReduceSubtree(sub)
			pieces = append(pieces, &dpcnnv1.Piece{
				JobId: "j", Group: 7, From: "w", FirstLeaf: uint32(c.Lo), LeafCount: uint32(c.Len()),
				GradientSum: dpcnnv1.NewTensor("grad", []int{len(sum)}, sum),
				Parts:       []*dpcnnv1.PiecePart{{WorkerId: c.String()}},
			})
		}
		rng.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
		w := &dpcnnv1.ReduceWork{JobId: "j", Group: 7, FirstLeaf: uint32(tc.lo), LeafCount: uint32(tc.hi - tc.lo),
			StepLeaves: uint32(tc.leaves), Pieces: uint32(len(pieces))}
		got, err := addPieces(w, pieces)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		sum := make([]float32, tc.n)
		if err := dpcnnv1.DecodeFloat32s(sum, got.GetGradientSum().GetData()); err != nil {
			t.Fatal(err)
		}
		for j := range sum {
			if sum[j] != wantNode[j] {
				t.Fatalf("%+v: value %d is %v, the tree's %v", tc, j, sum[j], wantNode[j])
			}
		}
		var parts []string
		for _, p := range got.Parts {
			parts = append(parts, p.GetWorkerId())
		}
		var wantParts []string
		for _, c := range tc.cuts {
			wantParts = append(wantParts, c.String())
		}
		if !slices.Equal(parts, wantParts) || got.GetFirstLeaf() != uint32(tc.lo) || got.GetLeafCount() != uint32(tc.hi-tc.lo) {
			t.Errorf("%+v: the sum covers [%d, +%d) with parts %v; want %v", tc, got.GetFirstLeaf(), got.GetLeafCount(), parts, wantParts)
		}
	}
}

// Pieces that do not make the group's node are refused, naming why.
func TestAddPiecesRefusesBadPieces(t *testing.T) {
	piece := func(lo, n, values int) *dpcnnv1.Piece {
		return &dpcnnv1.Piece{FirstLeaf: uint32(lo), LeafCount: uint32(n),
			GradientSum: dpcnnv1.NewTensor("grad", []int{values}, make([]float32, values))}
	}
	w := &dpcnnv1.ReduceWork{FirstLeaf: 0, LeafCount: 4, StepLeaves: 8, Pieces: 2}
	for name, ps := range map[string][]*dpcnnv1.Piece{
		"a hole":            {piece(0, 2, 3), piece(3, 1, 3)},
		"not a node":        {piece(0, 1, 3), piece(1, 3, 3)},
		"unequal lengths":   {piece(0, 2, 3), piece(2, 2, 4)},
		"without gradients": {piece(0, 2, 3), {FirstLeaf: 2, LeafCount: 2}},
	} {
		if _, err := addPieces(w, ps); err == nil {
			t.Errorf("%s: added", name)
		}
	}
}

// The reduce service, over real gRPC on loopback, refuses a piece without
// its group, and one that comes while the worker has no Work stream (so
// that the sender sends it to the coordinator instead).
func TestReduceServiceRefuses(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	dpcnnv1.RegisterReduceServiceServer(srv, &reduceService{r: newReducers("w1", slog.New(slog.DiscardHandler), nil)})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := dpcnnv1.NewReduceServiceClient(conn)
	for _, tc := range []struct {
		p    *dpcnnv1.Piece
		code codes.Code
	}{
		{&dpcnnv1.Piece{JobId: "j"}, codes.InvalidArgument},
		{&dpcnnv1.Piece{Group: 3}, codes.InvalidArgument},
		{&dpcnnv1.Piece{JobId: "j", Group: 3}, codes.Unavailable},
	} {
		if _, err := client.Push(context.Background(), tc.p); status.Code(err) != tc.code {
			t.Errorf("push %v: %v, want %v", tc.p, err, tc.code)
		}
	}
}

// A group takes no more than maxGroupPieces pieces: a sender's mistake
// cannot grow a reducer without end.
func TestReducerBoundsAGroupsPieces(t *testing.T) {
	r := newReducers("w1", slog.New(slog.DiscardHandler), nil)
	st := &stream{} // never sent on: the group never completes
	r.bind(st)
	defer r.unbind(st)
	p := &dpcnnv1.Piece{JobId: "j", Group: 3}
	for range maxGroupPieces {
		if err := r.take(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.take(p); err == nil {
		t.Fatalf("piece %d taken", maxGroupPieces+1)
	}
}

// A reduce service whose advertised address others could not dial is
// refused before the worker joins, naming the address.
func TestStartReduceRefusesABadAdvertisedAddress(t *testing.T) {
	for _, adv := range []string{"nohost", ":7071", "10.0.0.1:0"} {
		d := &daemon{cfg: DaemonConfig{ID: "w1", ReduceListen: "127.0.0.1:0", ReduceAdvertise: adv}, log: slog.New(slog.DiscardHandler)}
		if _, err := d.startReduce(); err == nil || !strings.Contains(err.Error(), adv) {
			t.Errorf("advertise %q: %v", adv, err)
		}
	}
}
