// The Upgrade page: the viewer's plan and what happens next (GET /v1/billing/subscription),
// a button per paid plan that starts Stripe Checkout (POST /v1/billing/checkout), "Manage
// subscription" for the Customer Portal, and the state after coming back from Checkout
// (?checkout=success: waits for Stripe's confirmation to reach us; ?checkout=cancel).

import { ApiError, api, refreshSession } from './api.js';
import { planName, startShell } from './shell.js';

const CONFIRM_POLLS = 20;
const CONFIRM_EVERY_MS = 2000;

function price(plan) {
  if (!plan.amount_minor) return 'No charge';
  const amount = (plan.amount_minor / 100).toFixed(2);
  const money = plan.currency === 'usd' ? '$' + amount : amount + ' ' + plan.currency.toUpperCase();
  return money + ' / ' + plan.interval;
}

function features(plan) {
  const screens = plan.max_streams === 1 ? '1 screen' : plan.max_streams + ' screens';
  return [`Up to ${plan.max_height}p`, screens, plan.ads ? 'With ads' : 'No ads'];
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

class UpgradePage {
  constructor(root, shell) {
    this.shell = shell;
    this.configured = root.dataset.configured === 'true';
    this.status = document.getElementById('upgrade-status');
    this.notice = document.getElementById('billing-notice');
    this.list = document.getElementById('plans');
    this.manage = document.getElementById('manage-billing');
    this.state = null;
    this.manage.addEventListener('click', () => this.openPortal());
    shell.onChange(() => this.load());
    window.kushUpgrade = this; // for tests and debugging
  }

  say(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle('form-error', error);
  }

  async start() {
    const outcome = new URLSearchParams(location.search).get('checkout');
    await this.load();
    if (outcome === 'cancel') {
      this.say('Checkout was canceled: nothing was charged and your plan has not changed.');
    } else if (outcome === 'success' && this.state) {
      await this.waitForConfirmation();
    }
  }

  async load() {
    if (!this.shell.user) {
      this.state = null;
      this.list.replaceChildren();
      this.manage.hidden = true;
      this.say('Sign in to see your plan and upgrade.');
      return;
    }
    try {
      this.state = await api('/v1/billing/subscription');
    } catch (err) {
      this.say(err instanceof ApiError ? err.message : 'Could not reach Kush Films.', true);
      return;
    }
    this.render();
  }

  render() {
    const s = this.state;
    const status = s.status && s.status !== 'active' ? ` (${s.status.replace('_', ' ')})` : '';
    this.say(`Your plan: ${s.plan_name}${status}. ${s.message}`);
    this.manage.hidden = !s.can_manage;
    const cards = s.plans.map((plan) => this.card(plan, s));
    this.list.replaceChildren(...cards);
  }

  card(plan, s) {
    const li = document.createElement('li');
    li.className = 'plan-card' + (plan.id === s.plan ? ' plan-current' : '');
    li.dataset.plan = plan.id;
    const title = document.createElement('h2');
    title.textContent = plan.name;
    const cost = document.createElement('p');
    cost.className = 'plan-price';
    cost.textContent = price(plan);
    const ul = document.createElement('ul');
    for (const line of features(plan)) {
      const item = document.createElement('li');
      item.textContent = line;
      ul.append(item);
    }
    li.append(title, cost, ul);
    if (plan.id === s.plan) {
      const tag = document.createElement('p');
      tag.className = 'plan-tag';
      tag.textContent = 'Your plan';
      li.append(tag);
    } else if (plan.amount_minor > 0 && s.provider === 'stripe' && s.can_manage) {
      // already subscribed: plan changes go through the Customer Portal (prorated there)
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'btn';
      button.textContent = 'Switch to ' + plan.name;
      button.addEventListener('click', () => this.openPortal());
      li.append(button);
    } else if (plan.amount_minor > 0) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'btn btn-accent';
      button.textContent = 'Choose ' + plan.name;
      button.addEventListener('click', () => this.checkout(plan.id, button));
      li.append(button);
    }
    return li;
  }

  async checkout(plan, button) {
    button.disabled = true;
    this.say(`Opening secure checkout for ${planName(plan)}…`);
    try {
      const { url } = await api('/v1/billing/checkout', { method: 'POST', body: { plan } });
      location.assign(url);
    } catch (err) {
      button.disabled = false;
      if (err instanceof ApiError && err.code === 'already_subscribed' && this.state.can_manage) {
        this.say(err.message, true);
        this.manage.focus();
        return;
      }
      this.say(err instanceof ApiError ? err.message
        : 'Could not reach Kush Films. Check your connection and try again.', true);
    }
  }

  async openPortal() {
    this.manage.disabled = true;
    try {
      const { url } = await api('/v1/billing/portal', { method: 'POST' });
      location.assign(url);
    } catch (err) {
      this.manage.disabled = false;
      this.say(err instanceof ApiError ? err.message : 'Could not reach Kush Films.', true);
    }
  }

  /** Back from Checkout: the plan changes when Stripe's webhook reaches us, usually
   * within seconds. Poll a little, then refresh the sign-in so the plan badge follows. */
  async waitForConfirmation() {
    const before = this.state.plan;
    for (let i = 0; i < CONFIRM_POLLS; i += 1) {
      if (this.state.provider === 'stripe' && this.state.plan !== 'free') break;
      this.say('Payment received. Waiting for the confirmation from Stripe…');
      await sleep(CONFIRM_EVERY_MS);
      await this.load();
    }
    if (this.state.plan === before && this.state.provider !== 'stripe') {
      this.say('Your payment is still being confirmed. This page will show your new plan '
        + 'once it is; you will also get an e-mail.');
      return;
    }
    if (await refreshSession()) await this.shell.start();
    this.render();
    this.say(`Payment confirmed. ${this.state.message}`);
  }
}

const shell = await startShell();
const page = new UpgradePage(document.getElementById('upgrade'), shell);
await page.start();
