// app.js — the one entry module. It picks the page module from
// <body data-page> and routes clicks and submits on [data-action] elements
// to the registered actions (no inline handlers: the CSP forbids them).
import { post, reachabilityEvent } from './api.js';
import * as signin from './signin.js';
import * as agent from './agent.js';
import * as admin from './admin.js';

const pages = { signin, app: agent, admin };

async function logout() {
  try {
    await post('/api/v1/auth/logout');
  } catch {
    // Signed out or not: the sign-in page is the right place either way.
  }
  window.location.assign('/signin');
}

const common = { logout };

function start() {
  const page = pages[document.body.dataset.page];
  const actions = { ...common, ...(page ? page.actions : {}) };

  document.addEventListener('click', (e) => {
    const el = e.target instanceof Element ? e.target.closest('[data-action]') : null;
    if (!el || el.tagName === 'FORM') return;
    const fn = actions[el.dataset.action];
    if (!fn) return;
    e.preventDefault();
    fn(el, e);
  });

  // Every page says so when the server cannot be reached (api.js).
  document.addEventListener(reachabilityEvent, (e) => {
    const banner = document.getElementById('offline-banner');
    if (banner) banner.hidden = e.detail.reachable;
  });

  document.addEventListener('submit', (e) => {
    const form = e.target;
    if (!(form instanceof HTMLFormElement)) return;
    const fn = actions[form.dataset.action];
    if (!fn) return; // plain forms (e.g. /auth/verify) submit normally
    e.preventDefault();
    fn(form, e);
  });

  if (page) page.init();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
