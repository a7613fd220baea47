// "Pay with mobile money" on the watch page: POST /v1/billing/mobile-money {product,
// msisdn} -> 202 pending (with provisional access until provisional_until), then
// GET /v1/billing/payments/{id} every few seconds until it is successful, failed or
// expired. window.kushMomo = {state} is there for tests.

import { api } from './api.js';

const POLL_MS = 3000;

function shillings(amount) {
  return amount.toLocaleString('en-UG') + ' UGX';
}

export class MobileMoney {
  constructor(root, { onSettled = () => {} } = {}) {
    this.root = root;
    this.form = root.querySelector('#momo-form');
    this.product = root.querySelector('#momo-product');
    this.msisdn = root.querySelector('#momo-msisdn');
    this.pay = root.querySelector('#momo-pay');
    this.status = root.querySelector('#momo-status');
    this.onSettled = onSettled;
    this.timer = null;
    this.state = { payment: null, error: null };
    window.kushMomo = { state: this.state };
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  /** Show the panel with what mobile money sells (hidden when nothing can be sold). */
  async start() {
    let offer;
    try {
      offer = await api('/v1/billing/mobile-money/products');
    } catch {
      return;
    }
    if (!offer.products.length) return;
    const options = offer.products.map((p) => new Option(
      `${p.name} — ${shillings(p.amount_ugx)}${p.kind === 'plan' ? ' / 30 days' : ''}`, p.id));
    this.product.replaceChildren(...options);
    this.root.hidden = false;
  }

  open() {
    this.root.hidden = false;
    this.root.open = true;
    this.msisdn.focus();
  }

  show(text, kind) {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
    this.status.hidden = false;
  }

  async submit() {
    clearTimeout(this.timer);
    this.pay.disabled = true;
    this.state.error = null;
    try {
      const payment = await api('/v1/billing/mobile-money', {
        method: 'POST',
        body: { product: this.product.value, msisdn: this.msisdn.value },
      });
      this.update(payment);
    } catch (err) {
      this.state.error = { code: err.code || 'error', message: err.message };
      this.show(err.message || 'The payment could not be started.', 'error');
      this.pay.disabled = false;
    }
  }

  update(payment) {
    this.state.payment = payment;
    this.root.dataset.status = payment.status;
    if (payment.status === 'pending') {
      const label = 'Waiting for your approval… ' + payment.message;
      this.show(label, 'pending');
      this.timer = setTimeout(() => this.poll(payment.payment_id), POLL_MS);
      return;
    }
    this.pay.disabled = false;
    this.show(payment.message, payment.status === 'successful' ? 'ok' : 'error');
    this.onSettled(payment);
  }

  async poll(paymentId) {
    try {
      this.update(await api('/v1/billing/payments/' + encodeURIComponent(paymentId)));
    } catch {
      this.timer = setTimeout(() => this.poll(paymentId), POLL_MS * 2);
    }
  }
}
