// examples/notes-app/static/notes.js: the two pages' behaviour.
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
    try { await api('DELETE', '/notes/' + n.id); li.remove(); } catch (e) { say(e.message); }
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
  if (document.body.dataset.page === 'login') {
    $('login-form').addEventListener('submit', passwordLogin);
    $('passkey-login').addEventListener('click', passkeyLogin);
  } else {
    $('note-form').addEventListener('submit', addNote);
    $('passkey-register').addEventListener('click', registerPasskey);
    $('logout').addEventListener('click', logout);
    loadNotes(false);
  }
});
