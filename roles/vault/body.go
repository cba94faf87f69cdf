package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/ocmt/ocmt/api"
)

// The sealed vault body (SPEC §5.2): typed, versioned records.
//
// Version 2, the one written, is a JSON object of named records, each
// decoded on its own into a typed field of secrets:
//
//	{"v":2,"records":{"identity":"<b64>","apiKeys":{…},"integrations":{…},
//	  "defaultProvider":"anthropic","capabilities":{"issued":{…},"received":{…}},
//	  "approvals":[…],"ways":{…},"heldShares":{…}}}
//
// Version 1 (no "v"), written before issue 10, kept capabilities,
// approvals and the default provider as JSON strings in a "settings"
// map; decodeBody reads it into the same typed fields and reports it
// migrated, and the vault saves it as version 2 when it opens.
//
// A record that fails to decode is never read as empty: decodeBody keeps
// its raw bytes, the vault opens with the other records, reading that
// record is refused (recordErrLocked) and so is every save
// (updateLocked), so that nothing on disk is overwritten until an
// operator repairs the file. Records of a name this release does not know
// (written by a newer one) are kept as they are and written back
// unchanged. The identity record is the exception: without it the vault
// cannot open at all, so a bad identity fails the unlock.

// bodyVersion is the body version this release writes.
const bodyVersion = 2

// secrets is the vault's unlocked state: the decoded records of the
// sealed body. Guarded by keyring.mu; read through keyring.viewLocked or
// the record's loader, change only through keyring.updateLocked.
type secrets struct {
	Identity        []byte                 // record "identity": crypto.Identity.Bytes()
	APIKeys         map[string]apiKey      // record "apiKeys", by provider
	Integrations    map[string]integration // record "integrations", by name
	DefaultProvider string                 // record "defaultProvider": provider name or "shared:<jti>", "" = first key
	Capabilities    capState               // record "capabilities" (capabilities.go)
	Approvals       []*approval            // record "approvals" (approvals.go)
	Ways            waysState              // record "ways": what the ways back in are (ways.go)
	HeldShares      map[string]*heldShare  // record "heldShares": social-recovery shares kept for others, by owner user id
}

// Record names of the body.
const (
	recIdentity        = "identity"
	recAPIKeys         = "apiKeys"
	recIntegrations    = "integrations"
	recDefaultProvider = "defaultProvider"
	recCapabilities    = "capabilities"
	recApprovals       = "approvals"
	recWays            = "ways"
	recHeldShares      = "heldShares"
)

// bodyRecords binds each record name to its field: the one table that
// loading and saving read. Add a record here and as a field of secrets.
var bodyRecords = []struct {
	name  string
	field func(*secrets) any // pointer to the field
}{
	{recIdentity, func(s *secrets) any { return &s.Identity }},
	{recAPIKeys, func(s *secrets) any { return &s.APIKeys }},
	{recIntegrations, func(s *secrets) any { return &s.Integrations }},
	{recDefaultProvider, func(s *secrets) any { return &s.DefaultProvider }},
	{recCapabilities, func(s *secrets) any { return &s.Capabilities }},
	{recApprovals, func(s *secrets) any { return &s.Approvals }},
	{recWays, func(s *secrets) any { return &s.Ways }},
	{recHeldShares, func(s *secrets) any { return &s.HeldShares }},
}

// bodyV2 is the JSON form of a version 2 body.
type bodyV2 struct {
	V       int                        `json:"v"`
	Records map[string]json.RawMessage `json:"records"`
}

// bodyV1 is the JSON form of a version 1 body (before issue 10).
type bodyV1 struct {
	Identity     []byte                 `json:"identity"`
	APIKeys      map[string]apiKey      `json:"apiKeys"`
	Integrations map[string]integration `json:"integrations,omitempty"`
	Settings     map[string]string      `json:"settings,omitempty"`
}

// v1 settings keys and the record each moved to.
var v1Settings = map[string]string{
	"capabilities":    recCapabilities,
	"approvals":       recApprovals,
	"defaultProvider": recDefaultProvider,
}

// recordSet is the decode result beside the typed fields: records that
// failed to decode and records of unknown names, both kept as raw JSON.
type recordSet struct {
	broken  map[string]json.RawMessage // name → bytes that failed to decode
	unknown map[string]json.RawMessage // name → bytes of a record this release does not know
}

// errBodyVersion is returned for a body written by a newer release.
var errBodyVersion = errors.New("vault body written by a newer release")

// decodeBody decodes a body of version 1 or 2. It returns the typed
// state, the records kept raw, and whether the body was version 1 (and so
// should be saved as version 2). It fails only when the body is not JSON
// of either shape, is of a newer version, or its identity record is
// unreadable; any other record that fails to decode is returned in
// rs.broken with its field left zero. Error texts never quote the body.
func decodeBody(b []byte) (s *secrets, rs recordSet, migrated bool, err error) {
	rs = recordSet{broken: map[string]json.RawMessage{}, unknown: map[string]json.RawMessage{}}
	var probe struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, rs, false, errors.New("vault body is not a JSON object")
	}
	var raw map[string]json.RawMessage
	switch {
	case probe.V == nil:
		raw, err = upgradeV1(b, rs.broken)
		if err != nil {
			return nil, rs, false, err
		}
		migrated = true
	case *probe.V == bodyVersion:
		var v2 bodyV2
		if err := json.Unmarshal(b, &v2); err != nil {
			return nil, rs, false, errors.New("vault body: records are not a JSON object")
		}
		raw = v2.Records
	case *probe.V > bodyVersion:
		return nil, rs, false, fmt.Errorf("%w (body version %d; this release reads up to %d)", errBodyVersion, *probe.V, bodyVersion)
	default:
		return nil, rs, false, fmt.Errorf("vault body: unknown version %d", *probe.V)
	}
	s = &secrets{}
	known := map[string]bool{}
	for _, r := range bodyRecords {
		known[r.name] = true
		v, ok := raw[r.name]
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		// A failed decode may fill a field partly: try on a scratch value
		// first, so that a broken record's field stays zero.
		if err := json.Unmarshal(v, r.field(&secrets{})); err != nil {
			if r.name == recIdentity {
				return nil, rs, false, errors.New("vault body: the identity record is unreadable")
			}
			rs.broken[r.name] = slices.Clone(v)
			continue
		}
		if err := json.Unmarshal(v, r.field(s)); err != nil {
			return nil, rs, false, err
		}
	}
	for name, v := range raw {
		if !known[name] {
			rs.unknown[name] = slices.Clone(v)
		}
	}
	if len(s.Identity) == 0 {
		return nil, rs, false, errors.New("vault body: no identity record")
	}
	s.normalize()
	return s, rs, migrated, nil
}

// upgradeV1 turns a version 1 body into version 2 records. A settings
// value that moved to a record but is not valid JSON goes to broken under
// that record's name; other settings keys are kept as records named
// "settings.<key>" so that nothing is dropped.
func upgradeV1(b []byte, broken map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	var v1 bodyV1
	if err := json.Unmarshal(b, &v1); err != nil {
		return nil, errors.New("vault body (version 1) is not the expected JSON object")
	}
	raw := map[string]json.RawMessage{}
	put := func(name string, v any) error {
		enc, err := json.Marshal(v)
		if err != nil {
			return err
		}
		raw[name] = enc
		return nil
	}
	if err := errors.Join(put(recIdentity, v1.Identity), put(recAPIKeys, v1.APIKeys), put(recIntegrations, v1.Integrations)); err != nil {
		return nil, err
	}
	for key, val := range v1.Settings {
		name, moved := v1Settings[key]
		switch {
		case !moved:
			if err := put("settings."+key, val); err != nil {
				return nil, err
			}
		case name == recDefaultProvider:
			if err := put(name, val); err != nil {
				return nil, err
			}
		case val == "":
		case json.Valid([]byte(val)):
			raw[name] = json.RawMessage(val)
		default:
			broken[name] = json.RawMessage(val)
		}
	}
	return raw, nil
}

// normalize gives nil maps their empty value so that handlers can write
// to them.
func (s *secrets) normalize() {
	if s.APIKeys == nil {
		s.APIKeys = map[string]apiKey{}
	}
	if s.Integrations == nil {
		s.Integrations = map[string]integration{}
	}
	if s.Capabilities.Issued == nil {
		s.Capabilities.Issued = map[string]*issuedCap{}
	}
	if s.Capabilities.Received == nil {
		s.Capabilities.Received = map[string]*receivedCap{}
	}
	if s.HeldShares == nil {
		s.HeldShares = map[string]*heldShare{}
	}
	s.Approvals = slices.DeleteFunc(s.Approvals, func(a *approval) bool { return a == nil })
}

// encodeBody returns the version 2 JSON of s plus the unknown records,
// or an error if any record is broken (a save must not overwrite it).
func encodeBody(s *secrets, rs recordSet) ([]byte, error) {
	if len(rs.broken) > 0 {
		return nil, errUnreadable(rs.broken)
	}
	out := bodyV2{V: bodyVersion, Records: make(map[string]json.RawMessage, len(bodyRecords)+len(rs.unknown))}
	for name, v := range rs.unknown {
		out.Records[name] = v
	}
	for _, r := range bodyRecords {
		b, err := json.Marshal(r.field(s))
		if err != nil {
			return nil, fmt.Errorf("encode vault record %s: %w", r.name, err)
		}
		out.Records[r.name] = b
	}
	return json.Marshal(out)
}

// errUnreadable is the answer while records of the vault body are
// unreadable: 500 vault_state_unreadable naming them (never their
// content).
func errUnreadable(broken map[string]json.RawMessage) error {
	names := make([]string, 0, len(broken))
	for n := range broken {
		names = append(names, n)
	}
	sort.Strings(names)
	return &api.Error{Status: http.StatusInternalServerError, Code: "vault_state_unreadable",
		Msg: "part of your vault (" + strings.Join(names, ", ") + ") could not be read; to protect it, nothing is saved " +
			"until it is repaired. Your other data is intact. Ask your administrator to restore the vault file from a backup.",
		Extra: map[string]any{"records": names}}
}

// recordErrLocked returns the vault_state_unreadable error if any of the
// named records failed to decode, so that a reader never takes a broken
// record for an empty one. k.mu held, unlocked.
func (k *keyring) recordErrLocked(names ...string) error {
	bad := map[string]json.RawMessage{}
	for _, n := range names {
		if v, ok := k.records.broken[n]; ok {
			bad[n] = v
		}
	}
	if len(bad) > 0 {
		return errUnreadable(bad)
	}
	return nil
}

// viewLocked calls read with the unlocked state if the named records
// (every record when none is named) decoded; read must not keep or change
// what it is given. k.mu held, unlocked.
func (k *keyring) viewLocked(read func(*secrets) error, names ...string) error {
	if k.sec == nil {
		return errors.New("vault locked")
	}
	if len(names) == 0 && len(k.records.broken) > 0 {
		return errUnreadable(k.records.broken)
	}
	if err := k.recordErrLocked(names...); err != nil {
		return err
	}
	return read(k.sec)
}
