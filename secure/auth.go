package secure

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Requirement is what a call must prove to be served.
type Requirement int

const (
	// Open calls need nothing (gRPC health checking, for probes).
	Open Requirement = iota
	// ClientCert calls need a client certificate that verified against
	// the server's CA (workers).
	ClientCert
	// BearerToken calls need a valid bearer token when the server has
	// tokens, else a verified client certificate (cnnctl).
	BearerToken
	// AnyCredential calls need a verified client certificate or a valid
	// bearer token (what both workers and cnnctl ask, such as where the
	// leader is).
	AnyCredential
)

// Authenticator checks the credentials of every call a gRPC server
// receives, by the method's Requirement, and refuses the others with
// UNAUTHENTICATED, logging who was refused and why.
type Authenticator struct {
	// Tokens are the accepted bearer tokens; nil: BearerToken calls need a
	// client certificate instead.
	Tokens *Tokens
	// ClientCerts says that the server speaks TLS and can check client
	// certificates. Without it (plaintext, allowed on loopback only) there
	// is no certificate to check, and ClientCert calls are served as they
	// come: the connection itself was explicitly trusted.
	ClientCerts bool
	// Require says what each method (/package.Service/Method) needs.
	Require func(fullMethod string) Requirement
	// Logger receives a warning for every refused call.
	Logger *slog.Logger
}

// UnaryInterceptor checks unary calls.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := a.Check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor checks streaming calls.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := a.Check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// Check says whether the call in ctx may run method: nil, or an
// UNAUTHENTICATED status error (logged).
func (a *Authenticator) Check(ctx context.Context, method string) error {
	req := BearerToken
	if a.Require != nil {
		req = a.Require(method)
	}
	var reason string
	switch {
	case req == Open:
	case req == BearerToken && a.Tokens != nil:
		reason = a.checkToken(ctx)
	case req == AnyCredential && a.Tokens != nil && a.ClientCerts:
		if !hasVerifiedCert(ctx) {
			if reason = a.checkToken(ctx); reason != "" {
				reason = "no verified client certificate, and " + reason
			}
		}
	case req == AnyCredential && a.Tokens != nil:
		reason = a.checkToken(ctx)
	case !a.ClientCerts:
	default: // a client certificate: ClientCert, or the others without tokens
		if !hasVerifiedCert(ctx) {
			reason = "no verified client certificate"
			if req == BearerToken {
				reason = "no verified client certificate (this server takes no tokens)"
			}
		}
	}
	if reason == "" {
		return nil
	}
	addr := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	if a.Logger != nil {
		a.Logger.Warn("refused unauthenticated call", "peer", addr, "method", method, "reason", reason)
	}
	return status.Errorf(codes.Unauthenticated, "%s: %s", method, reason)
}

// checkToken returns why the call's bearer token is refused, or "".
func (a *Authenticator) checkToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return "no bearer token (give cnnctl --token-file or DPCNN_TOKEN)"
	}
	if len(values) > 1 {
		return "more than one authorization header"
	}
	scheme, tok, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "authorization is not a bearer token"
	}
	if !a.Tokens.Valid(strings.TrimSpace(tok)) {
		return "invalid bearer token"
	}
	return ""
}

// hasVerifiedCert says whether the call came over TLS with a client
// certificate that verified against the server's CA.
func hasVerifiedCert(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(info.State.VerifiedChains) > 0
}
