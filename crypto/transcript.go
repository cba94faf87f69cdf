package crypto

import (
	"encoding/binary"
	"errors"
)

// transcriptADPrefix starts the associated data of every transcript record.
const transcriptADPrefix = "ocmt/v1/transcript"

// MaxSessionIDLen bounds the session id bound into a record (bytes).
const MaxSessionIDLen = 1024

var errSessionID = errors.New("crypto: session id must be 1 to 1024 bytes")

// recordAD returns the associated data of transcript record index of
// session sessionID (SPEC §5.3):
//
//	"ocmt/v1/transcript" ‖ uint32 BE len(sessionID) ‖ sessionID ‖ uint64 BE index
//
// The length prefix makes the encoding injective, so no (session, index)
// pair can collide with another.
func recordAD(sessionID string, index uint64) []byte {
	ad := make([]byte, 0, len(transcriptADPrefix)+4+len(sessionID)+8)
	ad = append(ad, transcriptADPrefix...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(sessionID)))
	ad = append(ad, sessionID...)
	return binary.BigEndian.AppendUint64(ad, index)
}

// SealRecord seals one transcript record with [Seal] under key (from
// [TranscriptKey]) and the associated data described at recordAD, which
// binds the session id and the record's index in it. A record therefore
// opens only at its own position of its own session: reordering records,
// deleting one from the middle (which shifts the rest), or moving records
// between sessions makes [OpenRecord] fail. (Truncating the tail of a transcript is not detected
// by this alone; the file framing must record the count if that matters.)
// sessionID must be 1 to [MaxSessionIDLen] bytes.
func SealRecord(key *SubKey, sessionID string, index uint64, plaintext []byte) ([]byte, error) {
	if len(sessionID) == 0 || len(sessionID) > MaxSessionIDLen {
		return nil, errSessionID
	}
	return Seal((*[32]byte)(key), plaintext, recordAD(sessionID, index))
}

// OpenRecord reverses [SealRecord] for the same key, sessionID and index;
// any mismatch or modification returns [ErrDecrypt].
func OpenRecord(key *SubKey, sessionID string, index uint64, sealed []byte) ([]byte, error) {
	if len(sessionID) == 0 || len(sessionID) > MaxSessionIDLen {
		return nil, ErrDecrypt
	}
	return Open((*[32]byte)(key), sealed, recordAD(sessionID, index))
}
