// The sign-in page (auth on, signed out): an API key, or a username and password
// (POST /auth/login). Mounted in place of the views; `done` starts the dashboard.
import {ApiError} from '../api.js';
import {h} from '../dom.js';
import {signInAs, signInWith} from '../session.js';

const NO_LOGIN = 'This server has no username and password sign-in: use an API key.';

export function mount(root, {note, done}) {
  const status = h('p', {id: 'signin-status', role: 'alert', class: note ? 'error' : 'muted'},
    note || 'This server runs with authentication on.');
  const key = h('input', {id: 'api-key', name: 'api-key', type: 'password', required: true,
    autocomplete: 'off', spellcheck: 'false', placeholder: 'jl_…'});
  const user = h('input', {id: 'username', name: 'username', required: true,
    autocomplete: 'username'});
  const password = h('input', {id: 'password', name: 'password', type: 'password',
    required: true, autocomplete: 'current-password'});
  const byKey = form('key-form', 'With an API key',
    [h('label', {for: 'api-key'}, 'API key'), key], 'Sign in with the key');
  const byPassword = form('password-form', 'With a username and password',
    [h('label', {for: 'username'}, 'Username'), user,
      h('label', {for: 'password'}, 'Password'), password], 'Sign in');
  root.append(h('section', {class: 'signin', 'aria-labelledby': 'signin-title'},
    h('h1', {id: 'signin-title'}, 'Sign in to jobledger'), status,
    h('div', {class: 'signin-forms'}, byKey, byPassword),
    h('p', {class: 'muted small'}, 'The key or password is sent once, to this server; the ',
      'browser then keeps a session cookie that scripts cannot read. A session lasts ',
      '12 hours, and ends at once when its key is revoked.')));
  key.focus();

  async function attempt(formEl, signIn) {
    const button = formEl.querySelector('button');
    button.disabled = true;
    try {
      done(await signIn());
    } catch (error) {
      status.className = 'error';
      status.textContent = explain(error, formEl === byPassword);
    } finally {
      button.disabled = false;
    }
  }
  byKey.addEventListener('submit', (event) => {
    event.preventDefault();
    attempt(byKey, () => signInWith(key.value.trim()));
  });
  byPassword.addEventListener('submit', (event) => {
    event.preventDefault();
    attempt(byPassword, () => signInAs(user.value, password.value));
  });
  return () => {};
}

function form(id, title, fields, submit) {
  return h('form', {id, class: 'card', 'aria-label': title}, h('h2', {}, title), fields,
    h('button', {type: 'submit'}, submit));
}

/** One line saying why signing in failed. */
function explain(error, withPassword) {
  if (!(error instanceof ApiError)) return `Could not reach the server: ${error.message}`;
  if (withPassword && (error.status === 404 || error.status === 405)) return NO_LOGIN;
  if (error.status === 403) return `Signed in, but this may not read tasks: ${error.message}`;
  return error.message;
}
