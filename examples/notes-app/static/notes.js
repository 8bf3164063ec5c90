// examples/notes-app/static/notes.js: the pages' behaviour (sign in, notes,
// and the account flows: reset.html and verify.html read the one-time token
// from the link's fragment, which the browser never sends to a server, and
// drop it from the address bar at once).
//
// The session token never reaches this script: it lives in an HttpOnly
// cookie.  The refresh token and the tenant the user typed are kept in
// sessionStorage for this tab.  Passkeys: navigator.credentials.create/get
// with a challenge from the server; the server (authctx, in the database)
// verifies what the authenticator returns.
'use strict';

const $ = (id) => document.getElementById(id);

const b64u = {
  enc(buf) {
    let s = '';
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  },
  dec(str) {
    const s = atob(str.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  },
};

function say(text, ok) {
  $('status').textContent = text;
  $('status').className = ok ? 'ok' : '';
}

// One JSON call; the tenant typed at sign-in goes along as X-Tenant.
async function api(method, path, body) {
  const headers = {};
  const tenant = sessionStorage.getItem('tenant');
  if (tenant) headers['X-Tenant'] = tenant;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = res.status === 204 ? null : await res.json();
  if (!res.ok) {
    const err = new Error((data && data.error) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

function signedIn(result) {
  sessionStorage.setItem('refresh', result.refresh_token);
  location.href = '/notes.html';
}

// ------------------------------------------------------------- login page

async function passwordLogin(ev) {
  ev.preventDefault();
  const tenant = $('tenant').value.trim();
  if (tenant) sessionStorage.setItem('tenant', tenant); else sessionStorage.removeItem('tenant');
  try {
    sessionStorage.setItem('email', $('email').value);
    signedIn(await api('POST', '/login', {
      email: $('email').value, password: $('password').value,
    }));
  } catch (e) {
    say(e.status === 401 ? 'Wrong email or password.' : e.message);
  }
}

async function passkeyLogin() {
  sessionStorage.removeItem('email');
  const tenant = $('tenant').value.trim();
  if (tenant) sessionStorage.setItem('tenant', tenant); else sessionStorage.removeItem('tenant');
  try {
    const c = await api('POST', '/webauthn/challenge');
    const cred = await navigator.credentials.get({publicKey: {
      challenge: b64u.dec(c.challenge), rpId: c.rp_id,
      userVerification: 'required', timeout: c.timeout_ms,
    }});
    const r = cred.response;
    signedIn(await api('POST', '/webauthn/login', {
      credential_id: b64u.enc(cred.rawId),
      authenticator_data: b64u.enc(r.authenticatorData),
      client_data_json: b64u.enc(r.clientDataJSON),
      signature: b64u.enc(r.signature),
    }));
  } catch (e) {
    say('Passkey sign-in failed: ' + e.message);
  }
}

async function forgotPassword() {
  try {
    await api('POST', '/password/forgot', {email: $('email').value});
    say('If the address has an account, a link to reset the password is on its way.', true);
  } catch (e) { say(e.message); }
}

// the token of a link (#axo_...), removed from the address bar and history
function linkToken() {
  const token = location.hash.slice(1);
  history.replaceState(null, '', location.pathname);
  return token;
}

async function resetPassword(ev, token) {
  ev.preventDefault();
  try {
    await api('POST', '/password/reset', {token, password: $('new-password').value});
    sessionStorage.clear();
    say('Your password is changed and every session signed out: sign in again.', true);
  } catch (e) {
    say(e.status === 401 ? 'This link is spent, expired or superseded: ask for a new one.' : e.message);
  }
}

async function verifyEmail(token) {
  try {
    await api('POST', '/email/verify', {token});
    say('Your email address is verified.', true);
  } catch (e) {
    say(e.status === 401 ? 'This link is spent, expired or superseded.' : e.message);
  }
}

// ------------------------------------------------------------- notes page

function renderNote(n) {
  const li = document.createElement('li');
  li.dataset.id = n.id;
  const h = document.createElement('h3');
  h.textContent = n.title;
  const p = document.createElement('p');
  p.textContent = n.body;
  const del = document.createElement('button');
  del.type = 'button';
  del.className = 'delete';
  del.textContent = 'Delete';
  del.addEventListener('click', async () => {
    try { await api('DELETE', '/notes/' + n.id); li.remove(); } catch (e) {
      say(e.status === 403 ? 'Deleting needs a second factor: verify a code below.' : e.message);
    }
  });
  li.append(h, p, del);
  return li;
}

// GET /notes; after a 401, one refresh with the stored refresh token.
async function loadNotes(retried) {
  let data;
  try {
    data = await api('GET', '/notes');
  } catch (e) {
    const refresh = sessionStorage.getItem('refresh');
    if (e.status === 401 && refresh && !retried) {
      try {
        const r = await api('POST', '/refresh', {refresh_token: refresh});
        sessionStorage.setItem('refresh', r.refresh_token);
        return loadNotes(true);
      } catch (e2) { /* fall through to the login page */ }
    }
    if (e.status === 401) { location.href = '/'; return; }
    say(e.message);
    return;
  }
  const me = await api('GET', '/me');
  $('tenant-name').textContent = me.tenant_name || me.tenant || 'no tenant yet';
  // a user of several tenants picks one; the choice goes along as X-Tenant
  $('tenants').replaceChildren(...me.tenants.filter((t) => t.tenant_id !== me.tenant_id).map((t) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = 'Switch to ' + (t.name || t.slug);
    b.addEventListener('click', () => { sessionStorage.setItem('tenant', t.slug); loadNotes(false); });
    return b;
  }));
  $('who').textContent = sessionStorage.getItem('email') || me.user_id;
  $('role').textContent = me.role || '(none)';
  $('method').textContent = me.auth_method;
  $('notes').replaceChildren(...data.notes.map(renderNote));
  loadAccount();
}

async function loadAccount() {
  try {
    const a = await api('GET', '/account');
    $('account-email').textContent = a.email;
    $('account-verified').textContent = a.email_verified_at ? 'verified' : 'not verified';
    $('account-totp').textContent = (a.totp_enabled ? 'on' : 'off') +
      ((a.amr || []).includes('otp') ? ', this session stepped up' : '');
  } catch (e) { /* the account panel is optional */ }
}

async function account(what) {
  try {
    if (what === 'verify') {
      await api('POST', '/email/verify/send');
      say('A verification link is on its way to your address.', true);
    } else if (what === 'enroll') {
      const r = await api('POST', '/totp/enroll');
      $('totp-uri').textContent = r.uri;
      $('totp-uri-row').hidden = false;
    } else if (what === 'confirm') {
      const r = await api('POST', '/totp/confirm', {code: $('totp-code').value});
      $('totp-uri-row').hidden = true;
      $('totp-uri').textContent = '';
      $('recovery-codes').textContent = 'Recovery codes (each works once; keep them safe):\n' +
        r.recovery_codes.join('\n');
      $('recovery-codes').hidden = false;
      say('Two-factor is on.', true);
    } else {
      await api('POST', '/totp/verify', {code: $('totp-code').value});
      say('Verified: this session is stepped up.', true);
    }
    $('totp-code').value = '';
    loadAccount();
  } catch (e) {
    say(e.status === 401 && what !== 'verify' ? 'Wrong code.' : e.message);
  }
}

async function addNote(ev) {
  ev.preventDefault();
  try {
    const n = await api('POST', '/notes', {title: $('note-title').value, body: $('note-body').value});
    $('notes').append(renderNote(n));
    $('note-title').value = '';
    $('note-body').value = '';
    say('Saved.', true);
  } catch (e) {
    say(e.status === 403 ? 'Your role in this tenant cannot change notes.' : e.message);
  }
}

async function registerPasskey() {
  const algs = {es256: [-7], eddsa: [-8], any: [-7, -8]}[$('passkey-alg').value];
  try {
    const c = await api('POST', '/webauthn/challenge', {purpose: 'register'});
    const cred = await navigator.credentials.create({publicKey: {
      challenge: b64u.dec(c.challenge),
      rp: {id: c.rp_id, name: 'Notes'},
      user: {id: b64u.dec(c.user.id), name: c.user.name, displayName: c.user.name},
      pubKeyCredParams: algs.map((alg) => ({type: 'public-key', alg})),
      authenticatorSelection: {residentKey: 'required', userVerification: 'required'},
      attestation: 'none', timeout: c.timeout_ms,
    }});
    const r = await api('POST', '/webauthn/register', {
      attestation_object: b64u.enc(cred.response.attestationObject),
      client_data_json: b64u.enc(cred.response.clientDataJSON),
      name: 'passkey ' + new Date().toISOString().slice(0, 10),
    });
    say('Passkey added (' + r.credential_id.slice(0, 8) + '…).', true);
  } catch (e) {
    say('Passkey registration failed: ' + e.message);
  }
}

async function logout() {
  try { await api('POST', '/logout'); } finally {
    sessionStorage.clear();
    location.href = '/';
  }
}

document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  if (page === 'login') {
    $('login-form').addEventListener('submit', passwordLogin);
    $('passkey-login').addEventListener('click', passkeyLogin);
    $('forgot').addEventListener('click', forgotPassword);
  } else if (page === 'reset') {
    const token = linkToken();
    $('reset-form').addEventListener('submit', (ev) => resetPassword(ev, token));
  } else if (page === 'verify') {
    verifyEmail(linkToken());
  } else {
    $('note-form').addEventListener('submit', addNote);
    $('passkey-register').addEventListener('click', registerPasskey);
    $('logout').addEventListener('click', logout);
    $('verify-send').addEventListener('click', () => account('verify'));
    $('totp-enroll').addEventListener('click', () => account('enroll'));
    $('totp-confirm').addEventListener('click', () => account('confirm'));
    $('totp-form').addEventListener('submit', (ev) => { ev.preventDefault(); account('verify-code'); });
    loadNotes(false);
  }
});
