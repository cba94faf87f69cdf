// kdflimits.js — the key derivation floor and ceiling (SPEC §5.1).
// Code generated from package crypto by ui/kdflimits_test.go; DO NOT EDIT.
// Regenerate with: OCMT_UPDATE_KDFLIMITS=1 go test ./ui -run TestKDFLimitsJS

/** kdfLimits are the bounds of crypto.KDFParams.Validate and crypto.CheckSalt. */
export const kdfLimits = Object.freeze({
  alg: "argon2id",
  minMemoryKiB: 32768,
  maxMemoryKiB: 1048576,
  minIterations: 2,
  maxIterations: 20,
  minParallelism: 1,
  maxParallelism: 16,
  minSaltBytes: 16,
  maxSaltBytes: 64,
});
