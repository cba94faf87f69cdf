// signin.js — the sign-in page: request a magic link.
import { post } from './api.js';
import { busy, status } from './dom.js';

const sentMessage = 'If that address has an account, a sign-in link is on its way. Check your inbox (or the server console).';

async function requestLink(form) {
  const input = form.elements.namedItem('email');
  const email = input ? input.value.trim() : '';
  if (!email) {
    status('signin-status', 'Enter your email address.', 'error');
    if (input) input.focus();
    return;
  }
  const button = form.querySelector('button[type=submit]');
  await busy(button, async () => {
    status('signin-status', 'Sending…');
    try {
      await post('/api/v1/auth/magic-link', { email });
      status('signin-status', sentMessage, 'ok');
    } catch (err) {
      status('signin-status', err.message, 'error');
    }
  });
}

export const actions = {
  'magic-link': (form) => requestLink(form),
};

export function init() {}
