// meter.js — the password strength meter next to a new-password field
// (onboarding and password change). Markup: a .strength element with
// data-for="<input id>", four bar segments and a .strength-text line.
import { minLength, strength } from './password.js';

function context() {
  const who = document.querySelector('.who');
  const email = who ? who.textContent.trim().toLowerCase() : '';
  const name = email.split('@')[0] || '';
  return [email, name, ...name.split(/[._+-]/)].filter((w) => w.length >= 3);
}

/** update renders the meter for input's current value and returns the strength result. */
export function update(input) {
  const meter = document.querySelector(`.strength[data-for="${input.id}"]`);
  const r = strength(input.value, context());
  if (!meter) return r;
  meter.dataset.score = input.value ? String(r.score) : '';
  meter.dataset.ok = String(r.ok);
  const text = meter.querySelector('.strength-text');
  if (text) {
    if (!input.value) text.textContent = `At least ${minLength} characters.`;
    else text.textContent = [`Strength: ${r.label}.`, ...r.hints.slice(0, 2)].join(' ');
  }
  return r;
}

/** bind keeps the meter of each new-password input with a meter up to date. */
export function bind() {
  document.addEventListener('input', (e) => {
    const el = e.target;
    if (el instanceof HTMLInputElement && el.id && document.querySelector(`.strength[data-for="${el.id}"]`)) update(el);
  });
}
