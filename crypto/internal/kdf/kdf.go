// Package kdf is the password key derivation shared by package crypto (the
// container) and crypto/wasm (the browser): Argon2id (RFC 9106) through
// golang.org/x/crypto/argon2, with the parameter bounds of SPEC §5.1.
//
// It is a separate leaf package so that the WebAssembly build links only
// Argon2id and base64, not the rest of package crypto (crypto/rand,
// Ed25519, JSON, ...): that would make kdf.wasm 2.9 MB instead of 2.0 MB. Package crypto re-exports everything here ([crypto.KDFParams],
// [crypto.DeriveKEK]); use that API, not this package.
package kdf

import (
	"errors"
	"strconv"

	"golang.org/x/crypto/argon2"
)

// Names, defaults and bounds; package crypto documents and re-exports them.
const (
	Argon2id = "argon2id"

	DefaultMemoryKiB   = 64 * 1024
	DefaultIterations  = 3
	DefaultParallelism = 4

	MinMemoryKiB   = 32 * 1024
	MaxMemoryKiB   = 1024 * 1024
	MinIterations  = 2
	MaxIterations  = 20
	MaxParallelism = 16

	SaltSize    = 16
	MinSaltSize = 16
	MaxSaltSize = 64

	KeySize = 32
)

var (
	// ErrParams is wrapped by every error from Params.Validate.
	ErrParams = errors.New("crypto: invalid KDF parameters")
	// ErrWeak wraps ErrParams; Validate returns it for a memory size or an
	// iteration count below the floor.
	ErrWeak = errors.New("crypto: KDF parameters weaker than the floor")
	// ErrSaltSize is returned for salts outside MinSaltSize..MaxSaltSize.
	ErrSaltSize = errors.New("crypto: salt must be 16 to 64 bytes")
	// ErrSaltDegenerate is returned for a salt of the right size that
	// cannot have come from a random source (see CheckSalt).
	ErrSaltDegenerate = errors.New("crypto: salt is degenerate (not random)")
)

// Params are the Argon2id parameters; see crypto.KDFParams.
type Params struct {
	// Alg is the algorithm name; only "argon2id" is valid.
	Alg string `json:"alg"`
	// MemoryKiB is the Argon2 memory size m in KiB (1024 bytes), RFC 9106 §3.1.
	MemoryKiB uint32 `json:"memoryKiB"`
	// Iterations is the Argon2 number of passes t.
	Iterations uint32 `json:"iterations"`
	// Parallelism is the Argon2 degree of parallelism p (lanes). It changes
	// the output: the same password with a different p is a different key.
	Parallelism uint8 `json:"parallelism"`
}

// Validate reports whether p is acceptable: Alg is "argon2id", MemoryKiB is
// in [MinMemoryKiB, MaxMemoryKiB] (32 MiB to 1 GiB), Iterations in
// [MinIterations, MaxIterations] (2..20) and Parallelism in 1..16. RFC 9106
// §3.1 also requires m ≥ 8·p KiB, which these bounds imply. Errors wrap
// [ErrParams] and name the field; a memory size or iteration count below
// the floor also wraps [ErrWeak].
func (p Params) Validate() error {
	switch {
	case p.Alg != Argon2id:
		return paramError("alg must be argon2id")
	case p.MemoryKiB < MinMemoryKiB:
		return weakError("memoryKiB must be at least " + strconv.Itoa(MinMemoryKiB))
	case p.MemoryKiB > MaxMemoryKiB:
		return paramError("memoryKiB must be at most " + strconv.Itoa(MaxMemoryKiB))
	case p.Iterations < MinIterations:
		return weakError("iterations must be at least " + strconv.Itoa(MinIterations))
	case p.Iterations > MaxIterations:
		return paramError("iterations must be at most " + strconv.Itoa(MaxIterations))
	case p.Parallelism < 1 || p.Parallelism > MaxParallelism:
		return paramError("parallelism must be 1.." + strconv.Itoa(MaxParallelism))
	}
	return nil
}

// CheckSalt reports whether salt has the shape of a random salt: 16 to 64
// bytes ([ErrSaltSize] otherwise), and not degenerate ([ErrSaltDegenerate]):
// fewer than len/4 distinct byte values (all zero, "abab…") or a constant
// step between neighbouring bytes (00 01 02 …) is refused. A salt from a
// random source fails these checks with probability below 2⁻⁸⁰.
func CheckSalt(salt []byte) error {
	if len(salt) < MinSaltSize || len(salt) > MaxSaltSize {
		return ErrSaltSize
	}
	var seen [256]bool
	distinct := 0
	constStep := true
	for i, b := range salt {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
		if i >= 2 && b-salt[i-1] != salt[1]-salt[0] {
			constStep = false
		}
	}
	if distinct < len(salt)/4 || constStep {
		return ErrSaltDegenerate
	}
	return nil
}

// Derive checks p ([Params.Validate]) and the salt ([CheckSalt]) and
// returns Argon2id(password, salt, p).
func Derive(password, salt []byte, p Params) ([KeySize]byte, error) {
	if err := p.Validate(); err != nil {
		return [KeySize]byte{}, err
	}
	if err := CheckSalt(salt); err != nil {
		return [KeySize]byte{}, err
	}
	return Unchecked(password, salt, p), nil
}

// Unchecked is Argon2id version 0x13 with no secret and no associated data
// and a 32-byte tag (RFC 9106 §3), without any parameter checks: the
// known-answer tests use it for reference vectors below MinMemoryKiB.
// Invalid parameters may panic inside x/crypto.
func Unchecked(password, salt []byte, p Params) [KeySize]byte {
	out := argon2.IDKey(password, salt, p.Iterations, p.MemoryKiB, p.Parallelism, KeySize)
	var k [KeySize]byte
	copy(k[:], out)
	clear(out)
	return k
}

type paramError string

type weakError string

func (e weakError) Error() string        { return ErrParams.Error() + ": " + string(e) }
func (e weakError) Is(target error) bool { return target == ErrWeak || target == ErrParams }

func (e paramError) Error() string { return ErrParams.Error() + ": " + string(e) }
func (e paramError) Unwrap() error { return ErrParams }
