// Who the dashboard is signed in as, and what they may do (GET /auth/session). With auth
// off the server says so, and every action is allowed with no sign-in.
//
// Signing in exchanges a credential for a session cookie (POST /auth/session): an API key
// as it is, or a username and password for a token (POST /auth/login) first. The page
// never stores the credential: the browser keeps the cookie (HttpOnly: no script reads
// it), and the page keeps the session's CSRF token in memory for its changes.
import {ApiError, request, setCsrfToken} from './api.js';

const ADMIN = 'admin';
let current = {auth: false, actor: null, permissions: []};

/** The session as the server sees it; null when signed out (auth on, no valid session). */
export async function load() {
  try {
    return adopt((await request('GET', '/auth/session', undefined, {quiet: true})).data);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return adopt(null);
    throw error;
  }
}

function adopt(session) {
  current = session || {auth: true, actor: null, permissions: []};
  setCsrfToken(session?.csrf_token ?? null);
  return session;
}

export const signedIn = () => current;

/** May the signed-in principal do what needs `permission`? (Always, with auth off.) */
export function can(permission) {
  const held = current.permissions;
  return !current.auth || held.includes(ADMIN) || held.includes(permission);
}

/** Sign in with an API key, or a token from /auth/login. */
export async function signInWith(credential) {
  const answer = await request('POST', '/auth/session', {},
    {headers: {authorization: `Bearer ${credential}`}, quiet: true});
  return adopt(answer.data);
}

/** Sign in with a username and password: a token from /auth/login, then a session. */
export async function signInAs(username, password) {
  const answer = await request('POST', '/auth/login', {username, password}, {quiet: true});
  return signInWith(answer.data.token);
}

export async function signOut() {
  try {
    await request('DELETE', '/auth/session', undefined, {quiet: true});
  } finally {
    adopt(null);
  }
}
