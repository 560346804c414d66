package secure

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
)

// minTokenLen is the shortest token a token file may hold: shorter ones
// can be guessed.
const minTokenLen = 16

// NewToken makes a random bearer token: 32 bytes from crypto/rand,
// base64url without padding (43 characters).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("secure: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Tokens is a set of accepted bearer tokens, kept as SHA-256 digests.
type Tokens struct {
	digests [][sha256.Size]byte
}

// ParseTokens reads a token file: one token per line, or "sha256:" and
// the hex SHA-256 of a token (so a server need not hold the token itself);
// blank lines and lines starting with # are skipped. At least one token is
// required.
func ParseTokens(data []byte) (*Tokens, error) {
	t := &Tokens{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if hexSum, ok := strings.CutPrefix(line, "sha256:"); ok {
			sum, err := hex.DecodeString(hexSum)
			if err != nil || len(sum) != sha256.Size {
				return nil, fmt.Errorf("line %d: sha256: wants 64 hex digits", n)
			}
			t.digests = append(t.digests, [sha256.Size]byte(sum))
			continue
		}
		if err := checkToken(line); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		t.digests = append(t.digests, sha256.Sum256([]byte(line)))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.digests) == 0 {
		return nil, errors.New("no token in it")
	}
	return t, nil
}

// LoadTokens reads a token file (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secure: token file: %w", err)
	}
	t, err := ParseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("secure: token file %s: %w", path, err)
	}
	return t, nil
}

// ReadToken reads the token a client sends: the first token line of a
// token file.
func ReadToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secure: token file: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "sha256:") {
			return "", fmt.Errorf("secure: token file %s: its first token is a digest (sha256:...), which only a server can use", path)
		}
		if err := checkToken(line); err != nil {
			return "", fmt.Errorf("secure: token file %s: %w", path, err)
		}
		return line, nil
	}
	return "", fmt.Errorf("secure: token file %s: no token in it", path)
}

func checkToken(tok string) error {
	if len(tok) < minTokenLen {
		return fmt.Errorf("a token of %d characters: want at least %d", len(tok), minTokenLen)
	}
	for _, r := range tok {
		if r <= ' ' || r > '~' {
			return errors.New("a token may hold only printable ASCII without spaces")
		}
	}
	return nil
}

// CheckToken refuses a token that cannot travel in a header or is short
// enough to guess.
func CheckToken(tok string) error {
	if err := checkToken(tok); err != nil {
		return fmt.Errorf("secure: %w", err)
	}
	return nil
}

// Valid says whether tok is one of the set's tokens. It compares digests
// in constant time and looks at every one, so the time taken says nothing
// about which token was near.
func (t *Tokens) Valid(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	ok := 0
	for i := range t.digests {
		ok |= subtle.ConstantTimeCompare(sum[:], t.digests[i][:])
	}
	return ok == 1
}

// TokenCredentials are gRPC per-call credentials that send a bearer
// token in the authorization header.
type TokenCredentials struct {
	token          string
	allowPlaintext bool
}

// NewTokenCredentials sends token with every call. gRPC refuses to send
// it over a connection without transport security unless allowPlaintext,
// which the caller sets only for an explicitly insecure connection to a
// loopback address.
func NewTokenCredentials(token string, allowPlaintext bool) *TokenCredentials {
	return &TokenCredentials{token: token, allowPlaintext: allowPlaintext}
}

var _ credentials.PerRPCCredentials = (*TokenCredentials)(nil)

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *TokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c *TokenCredentials) RequireTransportSecurity() bool { return !c.allowPlaintext }
