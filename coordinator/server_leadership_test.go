package coordinator

import (
	"context"
	"strings"
	"testing"

	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// A coordinator whose election key comes first but which has not taken
// over yet says so, naming itself as the one to ask again; it used to say
// "coordinator c2 does not lead: the leader is c2", which reads as a
// contradiction. Another coordinator names the leader to follow.
func TestNotLeaderWhileTakingOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cli := testEtcd(t)
	prefix := keyspace.DefaultPrefix
	const electAddr, otherAddr = "127.0.0.1:7", "127.0.0.1:8"
	if _, err := cli.Put(ctx, keyspace.CoordinatorKey(prefix, "c2"), electAddr); err != nil {
		t.Fatal(err)
	}
	sess, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := concurrency.NewElection(sess, keyspace.LeaderKey(prefix)).Campaign(ctx, electAddr); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		id, addr, want string
	}{
		{"c2", electAddr, "coordinator c2 does not lead yet: it won the election and is taking over"},
		{"c3", otherAddr, "coordinator c3 does not lead: the leader is c2 at " + electAddr},
	} {
		s := &Server{cfg: ServerConfig{ID: tc.id, Etcd: cli, Prefix: prefix}, advertise: tc.addr}
		err := s.notLeader(ctx)
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), tc.want) {
			t.Errorf("%s: %v; want UNAVAILABLE saying %q", tc.id, err, tc.want)
		}
		var leader *dpcnnv1.LeaderResponse
		for _, d := range st.Details() {
			if l, ok := d.(*dpcnnv1.LeaderResponse); ok {
				leader = l
			}
		}
		if leader == nil || leader.Address != electAddr || leader.CoordinatorId != "c2" {
			t.Errorf("%s: leader detail %v; want c2 at %s (the one to ask again)", tc.id, leader, electAddr)
		}
	}
}
