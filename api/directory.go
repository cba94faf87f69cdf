package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ocmt/ocmt/crypto"
)

// DirectoryKey is GET /internal/v1/directory/{userID} on the management
// role (service secret required): a user's published Ed25519 key.
type DirectoryKey struct {
	UserID  string `json:"userId"`
	Ed25519 string `json:"ed25519"` // "ed25519:<base64url>"
}

// DirectoryClient reads the management role's key directory over HTTP, for
// a relay role running on its own. It satisfies the relay's Directory.
type DirectoryClient struct {
	base   string
	secret string
	hc     *http.Client
}

// NewDirectoryClient returns a client for the management role at baseURL.
func NewDirectoryClient(baseURL, serviceSecret string) (*DirectoryClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("directory client: bad URL %q", baseURL)
	}
	return &DirectoryClient{base: strings.TrimRight(baseURL, "/"), secret: serviceSecret, hc: &http.Client{Timeout: 10 * time.Second}}, nil
}

// Ed25519Key returns the user's published signing key; an *Error with
// status 404 when the user has none.
func (d *DirectoryClient) Ed25519Key(ctx context.Context, userID string) (ed25519.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/internal/v1/directory/"+url.PathEscape(userID), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(AgentServiceHeader, d.secret)
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, Unavailable("directory_unreachable", "the management role is unreachable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, E(resp.StatusCode, "directory_error", "directory lookup failed")
	}
	var k DirectoryKey
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<10)).Decode(&k); err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	return crypto.ParseEd25519(k.Ed25519)
}
