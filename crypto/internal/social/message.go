package social

import (
	"encoding/binary"
	"errors"
)

// A Share is one share of a recovery secret with what binds it: whose
// vault it opens (Owner, a user id), which split it belongs to (Epoch)
// and how many shares rebuild it (Threshold). For a share released to a
// recovery request, Request is the request id; for a share kept by a
// contact it is "".
//
// Its sealed form (Marshal) is
//
//	"ocmt/v1/social-share\x00" ‖ len ‖ Owner ‖ len ‖ Request ‖ Epoch (uint32, big endian) ‖ Threshold (1 byte) ‖ Share (ShareSize)
//
// where each len is one byte. Marshal's output is what Seal encrypts: to
// the contact's X25519 key when the owner's vault hands the share out, to
// the request's one-time key when the contact's vault releases it.
type Share struct {
	Owner     string
	Request   string
	Epoch     uint32
	Threshold int
	Share     []byte
}

const shareMagic = "ocmt/v1/social-share\x00"

var errShareFormat = errors.New("social: malformed share message")

// Marshal returns the byte form described on Share.
func (s *Share) Marshal() ([]byte, error) {
	if len(s.Owner) == 0 || len(s.Owner) > 255 || len(s.Request) > 255 || s.Threshold < MinThreshold ||
		s.Threshold > MaxContacts || len(s.Share) != ShareSize {
		return nil, errShareFormat
	}
	b := make([]byte, 0, len(shareMagic)+2+len(s.Owner)+len(s.Request)+5+ShareSize)
	b = append(b, shareMagic...)
	b = append(b, byte(len(s.Owner)))
	b = append(b, s.Owner...)
	b = append(b, byte(len(s.Request)))
	b = append(b, s.Request...)
	b = binary.BigEndian.AppendUint32(b, s.Epoch)
	b = append(b, byte(s.Threshold))
	return append(b, s.Share...), nil
}

// UnmarshalShare parses Marshal's output. The returned Share's bytes are
// a copy.
func UnmarshalShare(b []byte) (*Share, error) {
	if len(b) < len(shareMagic) || string(b[:len(shareMagic)]) != shareMagic {
		return nil, errShareFormat
	}
	b = b[len(shareMagic):]
	str := func() (string, bool) {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return "", false
		}
		n := int(b[0])
		v := string(b[1 : 1+n])
		b = b[1+n:]
		return v, true
	}
	s := &Share{}
	var ok1, ok2 bool
	s.Owner, ok1 = str()
	s.Request, ok2 = str()
	if !ok1 || !ok2 || s.Owner == "" || len(b) != 5+ShareSize {
		return nil, errShareFormat
	}
	s.Epoch = binary.BigEndian.Uint32(b)
	s.Threshold = int(b[4])
	if s.Threshold < MinThreshold || s.Threshold > MaxContacts {
		return nil, errShareFormat
	}
	s.Share = append([]byte(nil), b[5:]...)
	return s, nil
}

// Zero clears the share bytes.
func (s *Share) Zero() { clear(s.Share) }

// Recover opens each sealed released share with the request's one-time
// key pair, keeps those that are for this owner and request (a share of
// another owner or request, one that does not open, or a repeated x
// coordinate is skipped), groups them by epoch, and combines the first
// epoch that has at least its threshold of shares into the secret, from
// which it returns the social KEK. With too few shares it returns
// ErrShares without combining. used is how many shares went in.
func Recover(pub, priv *[32]byte, owner, request string, sealed [][]byte) (kek [32]byte, used int, err error) {
	type group struct {
		threshold int
		seen      map[byte]bool
		shares    [][]byte
	}
	groups := map[uint32]*group{}
	var order []uint32
	defer func() {
		for _, g := range groups {
			for _, s := range g.shares {
				clear(s)
			}
		}
	}()
	for _, c := range sealed {
		msg, err := Open(pub, priv, c)
		if err != nil {
			continue
		}
		s, err := UnmarshalShare(msg)
		clear(msg)
		if err != nil {
			continue
		}
		g := groups[s.Epoch]
		if g == nil {
			g = &group{threshold: s.Threshold, seen: map[byte]bool{}}
			groups[s.Epoch] = g
			order = append(order, s.Epoch)
		}
		x := s.Share[ShareSize-1]
		if s.Owner != owner || s.Request != request || s.Threshold != g.threshold || g.seen[x] {
			s.Zero()
			continue
		}
		g.seen[x] = true
		g.shares = append(g.shares, s.Share)
	}
	for _, e := range order {
		g := groups[e]
		used = max(used, len(g.shares))
		if len(g.shares) < g.threshold {
			continue
		}
		secret, err := Combine(g.shares)
		if err != nil {
			return kek, len(g.shares), err
		}
		kek, err = KEK(secret)
		clear(secret)
		return kek, len(g.shares), err
	}
	return kek, used, ErrShares
}
