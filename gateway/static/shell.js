// What every page shares: the account bar (plan, Upgrade, Sign in / Sign out) and the
// sign-in sheet.

import { ApiError, currentUser, signIn, signOut } from './api.js';

const PLAN_NAMES = { free: 'Free', basic: 'Basic', premium: 'Premium' };

export function planName(plan) {
  return PLAN_NAMES[plan] || plan;
}

/** "1 h 45 min", "12 min", "< 1 min" (or '' when unknown). */
export function formatDuration(seconds) {
  if (!seconds) return '';
  if (seconds < 60) return '< 1 min';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return minutes + ' min';
  return Math.floor(minutes / 60) + ' h ' + String(minutes % 60).padStart(2, '0') + ' min';
}

export class Shell {
  constructor() {
    this.user = null;
    this.listeners = [];
    this.el = {
      badge: document.getElementById('plan-badge'),
      upgrade: document.getElementById('upgrade-link'),
      signin: document.getElementById('signin-button'),
      signout: document.getElementById('signout-button'),
      dialog: document.getElementById('signin-dialog'),
      form: document.getElementById('signin-form'),
      email: document.getElementById('signin-email'),
      password: document.getElementById('signin-password'),
      error: document.getElementById('signin-error'),
      submit: document.getElementById('signin-submit'),
      cancel: document.getElementById('signin-cancel'),
    };
    this.el.signin.addEventListener('click', () => this.askToSignIn());
    this.el.signout.addEventListener('click', () => this.signOut());
    this.el.cancel.addEventListener('click', () => this.el.dialog.close());
    this.el.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submitSignIn();
    });
  }

  /** Load who is signed in and draw the bar. */
  async start() {
    try {
      this.user = await currentUser();
    } catch {
      this.user = null;
    }
    this.render();
    return this.user;
  }

  /** Call `listener(user)` after every sign in or sign out. */
  onChange(listener) {
    this.listeners.push(listener);
  }

  render() {
    const { user } = this;
    const { badge, upgrade, signin, signout } = this.el;
    signin.hidden = Boolean(user);
    signout.hidden = !user;
    badge.hidden = !user;
    upgrade.hidden = !user || user.plan === 'premium';
    if (user) {
      document.getElementById('plan-name').textContent = planName(user.plan);
      badge.title = user.email;
    }
  }

  askToSignIn(message = '') {
    const { dialog, error, email } = this.el;
    error.hidden = !message;
    error.textContent = message;
    if (!dialog.open) dialog.showModal();
    email.focus();
  }

  async submitSignIn() {
    const { email, password, error, submit, dialog } = this.el;
    if (!email.value.trim() || !password.value) {
      error.textContent = 'Enter your email and password.';
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    error.hidden = true;
    try {
      await signIn(email.value.trim(), password.value);
      password.value = '';
      dialog.close();
      this.user = await currentUser();
      this.render();
      this.listeners.forEach((listener) => listener(this.user));
    } catch (err) {
      error.textContent = err instanceof ApiError
        ? err.message
        : 'Could not reach Kush Films. Check your connection and try again.';
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  }

  async signOut() {
    this.el.signout.disabled = true;
    try {
      await signOut();
    } catch {
      this.el.signout.disabled = false;
      return; // offline: still signed in, say nothing and let the viewer try again
    }
    this.el.signout.disabled = false;
    this.user = null;
    this.render();
    this.listeners.forEach((listener) => listener(null));
  }
}

export async function startShell() {
  const shell = new Shell();
  await shell.start();
  return shell;
}
