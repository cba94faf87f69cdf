// password.js — vault password strength, without a dictionary download.
//
// strength(pw) estimates bits of entropy from the character classes used
// and an "effective length" that discounts repeats, sequences (abc, 123,
// cba) and repeated chunks (hellohello), and caps anything that is a
// well-known password once common substitutions (P@ssw0rd) and trailing
// digits or symbols (Summer2024!) are stripped. The vault requires at least
// minLength characters and a score of at least minScore ("Fair"). The
// password itself never leaves the browser; this is only advice, the real
// protection is Argon2id with 64 MiB per guess.

export const minLength = 10;
export const minScore = 2;
export const labels = ['Very weak', 'Weak', 'Fair', 'Good', 'Strong'];

// A short list of the most used passwords and password stems.
const common = new Set([
  'password', 'passw0rd', 'password1', 'qwerty', 'qwertyuiop', 'qwertz', 'azerty', 'asdfgh', 'asdfghjkl',
  'zxcvbnm', '123456', '1234567', '12345678', '123456789', '1234567890', '0987654321', '111111', '000000',
  '123123', '654321', 'abc123', 'iloveyou', 'letmein', 'welcome', 'monkey', 'dragon', 'football',
  'baseball', 'soccer', 'hockey', 'master', 'shadow', 'sunshine', 'princess', 'superman', 'batman',
  'trustno1', 'admin', 'administrator', 'root', 'login', 'starwars', 'whatever', 'freedom', 'secret',
  'summer', 'winter', 'spring', 'autumn', 'michael', 'jennifer', 'jordan', 'hunter', 'ranger',
  'charlie', 'pokemon', 'computer', 'internet', 'changeme', 'default', 'mypassword', 'passphrase',
  'correcthorsebatterystaple', 'ocmt', 'vault', 'vaultpassword', 'myvault', 'opensesame', 'loveyou',
  'chocolate', 'cookie', 'flower', 'hello', 'helloworld', 'google', 'facebook', 'linkedin', 'samsung',
  'apple', 'pass', 'test', 'testing', 'guest', 'user', 'qazwsx', '1q2w3e4r', '1qaz2wsx', 'zaq12wsx',
]);

const leet = { 0: 'o', 1: 'l', 3: 'e', 4: 'a', 5: 's', 7: 't', 8: 'b', '@': 'a', $: 's', '!': 'i', '|': 'l', '+': 't' };

function unleet(s) {
  return s.replace(/[0134578@$!|+]/g, (c) => leet[c] || c);
}

/** isCommon reports whether pw is, at heart, a well-known password. */
export function isCommon(pw) {
  const lower = String(pw).toLowerCase();
  const stems = new Set([lower, lower.replace(/[\s\d\W_]+$/u, ''), lower.replace(/^[\d\W_]+/u, '').replace(/[\d\W_]+$/u, '')]);
  for (const s of [...stems]) stems.add(unleet(s));
  stems.add(unleet(lower).replace(/[\s\d\W_]+$/u, ''));
  for (const s of stems) {
    if (s.length >= 3 && common.has(s)) return true;
  }
  return false;
}

function poolSize(chars) {
  let pool = 0;
  if (chars.some((c) => /[a-z]/.test(c))) pool += 26;
  if (chars.some((c) => /[A-Z]/.test(c))) pool += 26;
  if (chars.some((c) => /[0-9]/.test(c))) pool += 10;
  if (chars.some((c) => /[ -/:-@[-`{-~]/.test(c))) pool += 33;
  if (chars.some((c) => c.codePointAt(0) > 126)) pool += 100;
  return Math.max(pool, 1);
}

function classCount(chars) {
  return [/[a-z]/, /[A-Z]/, /[0-9]/, /[^a-zA-Z0-9]/].filter((re) => chars.some((c) => re.test(c))).length;
}

// effectiveLength counts a repeat of the previous character as 0.25 and a
// step of ±1 from it (abc, 321) as 0.5; a string that is one chunk repeated
// counts as the chunk plus one.
function effectiveLength(chars) {
  const s = chars.join('');
  const rep = /^(.+?)\1+$/su.exec(s);
  if (rep) return effectiveLength([...rep[1]]) + 1;
  let eff = 0;
  for (let i = 0; i < chars.length; i++) {
    if (i === 0) { eff += 1; continue; }
    const a = chars[i - 1].toLowerCase().codePointAt(0);
    const b = chars[i].toLowerCase().codePointAt(0);
    if (a === b) eff += 0.25;
    else if (Math.abs(a - b) === 1) eff += 0.5;
    else eff += 1;
  }
  return eff;
}

/**
 * strength rates pw. context lists words the password should not contain
 * (the user's email name, say). It returns {score 0–4, label, ok, bits,
 * hints[]}; ok means the vault accepts it (≥ minLength characters and a
 * score ≥ minScore). An empty password has score 0, label "" and no hints.
 */
export function strength(pw, context = []) {
  const s = String(pw ?? '');
  const chars = [...s];
  if (chars.length === 0) return { score: 0, label: '', ok: false, bits: 0, hints: [] };
  const hints = [];
  const pool = poolSize(chars);
  const bits = Math.round(effectiveLength(chars) * Math.log2(pool));
  let score = bits < 28 ? 0 : bits < 40 ? 1 : bits < 55 ? 2 : bits < 70 ? 3 : 4;

  if (isCommon(s)) {
    score = 0;
    hints.push('This is a commonly used password.');
  }
  const lower = s.toLowerCase();
  const personal = context.map((w) => String(w || '').toLowerCase()).filter((w) => w.length >= 3 && lower.includes(w));
  if (personal.length) {
    score = Math.min(score, 1);
    hints.push('Avoid your name or email address.');
  }
  if (chars.length < minLength) {
    score = Math.min(score, 1);
    hints.push(`Use at least ${minLength} characters (${minLength - chars.length} more).`);
  }
  if (effectiveLength(chars) < chars.length * 0.7) hints.push('Avoid repeats and sequences like aaa or 1234.');
  if (score < 3 && hints.length === 0) {
    hints.push(classCount(chars) < 3 ? 'Make it longer, or mix in capitals, digits or symbols.' : 'Make it longer for a stronger vault.');
  }
  return { score, label: labels[score], ok: chars.length >= minLength && score >= minScore, bits, hints };
}
