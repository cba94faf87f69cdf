package crypto

import (
	"crypto/rand"

	"github.com/ocmt/ocmt/crypto/internal/kdf"
)

// KDF algorithm names and parameter bounds (SPEC §5.1, RFC 9106).
const (
	// KDFArgon2id is the only accepted [KDFParams].Alg: Argon2id version
	// 0x13 (RFC 9106 §3).
	KDFArgon2id = kdf.Argon2id

	// DefaultMemoryKiB, DefaultIterations and DefaultParallelism are the
	// SPEC §5.1 defaults: m = 64 MiB, t = 3, p = 4, the second recommended
	// option of RFC 9106 §4.
	DefaultMemoryKiB   = kdf.DefaultMemoryKiB
	DefaultIterations  = kdf.DefaultIterations
	DefaultParallelism = kdf.DefaultParallelism

	// MinMemoryKiB and MaxMemoryKiB bound KDFParams.MemoryKiB: 32 MiB to
	// 1 GiB; MinIterations and MaxIterations bound KDFParams.Iterations:
	// 2..20. These are the one floor and ceiling for parameters from every
	// source (the params file, vault headers, password changes, and the
	// browser, whose ui/static/kdflimits.js is generated from them). The
	// floor (half the SPEC default's memory, two passes; about 4 times
	// cheaper than the default) keeps a tampered or misconfigured header
	// or params file from making the browser send a key that is cheap to
	// brute-force; the ceiling keeps a hostile header from making a
	// browser allocate unbounded memory or spin for minutes. The
	// known-answer tests with less memory go through an unexported path
	// that skips Validate.
	MinMemoryKiB  = kdf.MinMemoryKiB
	MaxMemoryKiB  = kdf.MaxMemoryKiB
	MinIterations = kdf.MinIterations
	MaxIterations = kdf.MaxIterations

	// MaxParallelism bounds KDFParams.Parallelism (1..16).
	MaxParallelism = kdf.MaxParallelism

	// SaltSize is the size of salts made by [NewSalt]: 16 bytes, as
	// RFC 9106 §3.1 recommends for password hashing.
	SaltSize = kdf.SaltSize
	// MinSaltSize and MaxSaltSize bound the salt accepted by [CheckSalt],
	// [DeriveKEK] and in vault headers: 16 to 64 bytes.
	MinSaltSize = kdf.MinSaltSize
	MaxSaltSize = kdf.MaxSaltSize
)

// Errors of [KDFParams.Validate] and [CheckSalt].
var (
	// ErrKDFParams is wrapped by every error from [KDFParams.Validate].
	ErrKDFParams = kdf.ErrParams
	// ErrKDFWeak is also wrapped by the errors of [KDFParams.Validate] for
	// a memory size or iteration count below the floor.
	ErrKDFWeak = kdf.ErrWeak
	// ErrSaltSize is returned for salts outside MinSaltSize..MaxSaltSize.
	ErrSaltSize = kdf.ErrSaltSize
	// ErrSaltDegenerate is returned for salts that cannot be random.
	ErrSaltDegenerate = kdf.ErrSaltDegenerate
)

// CheckSalt reports whether salt has the shape of a random salt: 16 to 64
// bytes (else [ErrSaltSize]) and not degenerate (else
// [ErrSaltDegenerate]): fewer than len/4 distinct byte values (all zero,
// "abab…") or a constant step between neighbouring bytes (00 01 02 …) is
// refused. A salt from crypto/rand fails with probability below 2⁻⁸⁰.
func CheckSalt(salt []byte) error { return kdf.CheckSalt(salt) }

// KDFParams are the Argon2id parameters stored in the vault header and sent
// to the browser (GET /params, SPEC §11). JSON form:
//
//	{"alg":"argon2id","memoryKiB":65536,"iterations":3,"parallelism":4}
//
// Fields: Alg (only [KDFArgon2id]); MemoryKiB, the Argon2 memory size m in
// KiB; Iterations, the number of passes t; Parallelism, the number of lanes
// p, which changes the output. The output length is always [KeySize]
// (32 bytes) and the Argon2 version always 0x13; neither is a parameter.
//
// Validate reports whether the parameters are acceptable: Alg is
// "argon2id", MemoryKiB in [MinMemoryKiB, MaxMemoryKiB] (32 MiB to 1 GiB),
// Iterations in 2..20 and Parallelism in 1..16 (RFC 9106 §3.1 also requires
// m ≥ 8·p KiB, which these bounds imply). Its errors wrap [ErrKDFParams]
// and name the field; below the floor they also wrap [ErrKDFWeak].
//
// The type is defined in an internal package shared with the WebAssembly
// build (crypto/wasm), so the browser links only the KDF.
type KDFParams = kdf.Params

// DefaultKDFParams returns the SPEC §5.1 parameters: Argon2id with
// m = 65536 KiB (64 MiB), t = 3, p = 4.
func DefaultKDFParams() KDFParams {
	return KDFParams{Alg: KDFArgon2id, MemoryKiB: DefaultMemoryKiB, Iterations: DefaultIterations, Parallelism: DefaultParallelism}
}

// NewSalt returns [SaltSize] (16) random bytes from crypto/rand that pass
// [CheckSalt] (it draws again in the practically impossible other case).
func NewSalt() ([]byte, error) {
	s := make([]byte, SaltSize)
	for {
		if _, err := rand.Read(s); err != nil {
			return nil, err
		}
		if CheckSalt(s) == nil {
			return s, nil
		}
	}
}

// DeriveKEK derives the key-encryption key from password and salt with
// Argon2id (RFC 9106, version 0x13, no secret and no associated data,
// 32-byte tag) using golang.org/x/crypto/argon2.IDKey. p must pass
// [KDFParams.Validate] (errors wrap [ErrKDFParams]); salt must pass
// [CheckSalt]. password is used as given (any
// length, including empty): the browser normalises it (Unicode NFC) first.
//
// The browser runs this same code compiled to WebAssembly (crypto/wasm), so
// browser and container derive identical keys. With the default parameters
// it allocates 64 MiB and, measured on a 2-core AMD EPYC VM, takes about
// 80 ms natively when warm (BenchmarkDeriveKEKDefault), 170 ms cold, and
// about 410 ms as WebAssembly under Node 20 (ui/wasm_test.go), where the
// four lanes run on one thread.
func DeriveKEK(password, salt []byte, p KDFParams) (KEK, error) {
	k, err := kdf.Derive(password, salt, p)
	return KEK(k), err
}

// deriveKEK is Argon2id without parameter checks, for the known-answer
// tests' reference vectors below MinMemoryKiB.
func deriveKEK(password, salt []byte, p KDFParams) KEK {
	return KEK(kdf.Unchecked(password, salt, p))
}
