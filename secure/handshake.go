package secure

import (
	"log/slog"
	"net"

	"google.golang.org/grpc/credentials"
)

// LogRefusedHandshakes wraps a server's transport credentials so that every
// TLS handshake it refuses (a client certificate from another CA, an
// expired one, a client that speaks no TLS) is logged as a warning naming
// the peer. gRPC itself logs those only to its own logger.
func LogRefusedHandshakes(creds credentials.TransportCredentials, logger *slog.Logger) credentials.TransportCredentials {
	if creds == nil || logger == nil {
		return creds
	}
	return &loggedCredentials{TransportCredentials: creds, log: logger}
}

type loggedCredentials struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func (c *loggedCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.log.Warn("refused TLS handshake", "peer", conn.RemoteAddr().String(), "err", err)
	}
	return out, info, err
}

func (c *loggedCredentials) Clone() credentials.TransportCredentials {
	return &loggedCredentials{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}
