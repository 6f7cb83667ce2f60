// The fake's consent page (`hubconnect fake --interactive`) in headless Chromium (Debian's `chromium`, driven
// with playwright-core): choose an account, "Connect app", land on the redirect with a code; "Cancel"; a
// preselected account; and the whole flow with `hubconnect connect` and `complete`.
// CHROMIUM names the browser (default /usr/bin/chromium). Without it the test is skipped, except under CI=true.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { bin, startFake } from './fake.mjs';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const available = existsSync(executablePath);
if (!available && process.env.CI === 'true') {
  throw new Error(`no browser at ${executablePath}: CI=true requires the consent page test to run`);
}
let redirect;
let fake;
let browser;
let callbacks;

before(async () => {
  if (!available) return;
  // The app's callback: a loopback server that only says it was reached.
  callbacks = createServer((request, response) => response.end('<p>callback</p>'));
  await new Promise((resolve) => callbacks.listen(0, '127.0.0.1', resolve));
  redirect = `http://localhost:${callbacks.address().port}/oauth/callback`;
  fake = await startFake(['--interactive', '--redirect-uri', redirect]);
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu'] });
});
after(async () => {
  await browser?.close();
  callbacks?.close();
  if (fake) assert.equal(await fake.stop(), 0);
});

/** The consent page in a new browser tab. */
async function openConsent(path = '/oauth/authorize') {
  const page = await browser.newPage();
  const url = new URL(path, fake.base);
  url.searchParams.set('client_id', fake.ready.client_id);
  url.searchParams.set('redirect_uri', redirect);
  url.searchParams.set('scope', 'oauth crm.objects.contacts.read');
  url.searchParams.set('optional_scope', 'crm.objects.deals.read');
  url.searchParams.set('state', 'browser-state');
  await page.goto(url.toString());
  return page;
}

test('choose an account, Connect app, land on the redirect with a code', { skip: !available && 'SKIPPED: no Chromium' }, async () => {
  const page = await openConsent();
  await page.getByRole('heading', { name: 'Choose an account' }).waitFor();
  const europe = fake.ready.portals.find((p) => p.name === 'Acme Europe');
  assert.ok(europe, JSON.stringify(fake.ready.portals));
  for (const portal of fake.ready.portals) {
    assert.equal(await page.getByRole('radio', { name: portal.name, exact: true }).count(), 1, portal.name);
  }
  assert.equal(await page.getByText('Developer account').count(), 1);
  assert.equal(await page.getByRole('listitem').filter({ hasText: 'crm.objects.deals.read' }).count(), 1);

  await page.getByRole('radio', { name: 'Acme Europe', exact: true }).check();
  if (process.env.CONSENT_SCREENSHOT) await page.screenshot({ path: process.env.CONSENT_SCREENSHOT, fullPage: true });
  await Promise.all([page.waitForURL(`${redirect}**`), page.getByRole('button', { name: 'Connect app' }).click()]);
  const landed = new URL(page.url());
  assert.equal(landed.searchParams.get('state'), 'browser-state');
  const code = landed.searchParams.get('code');
  assert.ok(code, page.url());

  // The code is for the chosen account.
  const answer = await fetch(`${fake.base}/oauth/2026-03/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirect,
      client_id: fake.ready.client_id, client_secret: fake.ready.client_secret }),
  });
  assert.equal(answer.status, 200);
  const tokens = await answer.json();
  assert.equal(tokens.hub_id, europe.id);
  assert.deepEqual(tokens.scopes, ['oauth', 'crm.objects.contacts.read', 'crm.objects.deals.read']);
  await page.close();
});

test('Cancel lands on the redirect with access_denied', { skip: !available && 'SKIPPED: no Chromium' }, async () => {
  const page = await openConsent();
  await Promise.all([page.waitForURL(`${redirect}**`), page.getByRole('button', { name: 'Cancel' }).click()]);
  const landed = new URL(page.url());
  assert.equal(landed.searchParams.get('error'), 'access_denied');
  assert.equal(landed.searchParams.get('state'), 'browser-state');
  assert.equal(landed.searchParams.get('code'), null);
  await page.close();
});

test('a preselected account skips the picker', { skip: !available && 'SKIPPED: no Chromium' }, async () => {
  const developer = fake.ready.portals.find((p) => p.account_type === 'APP_DEVELOPER');
  const page = await openConsent(`/oauth/${developer.id}/authorize`);
  assert.equal(await page.getByRole('radio').count(), 0);
  assert.equal(await page.getByText(developer.name).count() > 0, true);
  await Promise.all([page.waitForURL(`${redirect}**`), page.getByRole('button', { name: 'Connect app' }).click()]);
  assert.ok(new URL(page.url()).searchParams.get('code'));
  await page.close();
});

test('hubconnect connect, the consent page, hubconnect complete', { skip: !available && 'SKIPPED: no Chromium' }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hubconnect-consent-'));
  const hubconnect = async (...args) => {
    const { stdout } = await promisify(execFile)(bin, [
      '--store', `sqlite://${path.join(dir, 'store.db')}`, '--client-id', fake.ready.client_id,
      '--client-secret', fake.ready.client_secret, '--redirect-uri', redirect, '--auth-base', fake.base,
      '--api-base', fake.base, ...args, '--json',
    ], { env: { PATH: process.env.PATH } });
    return JSON.parse(stdout);
  };
  try {
    const begun = await hubconnect('connect', '--tenant', 'acme', '--scopes', 'oauth,crm.objects.contacts.read');
    const page = await browser.newPage();
    await page.goto(begun.authorize_url);
    await page.getByRole('radio', { name: 'Acme Inc', exact: true }).check();
    await Promise.all([page.waitForURL(`${redirect}**`), page.getByRole('button', { name: 'Connect app' }).click()]);
    const connection = await hubconnect('complete', '--callback-url', page.url());
    assert.equal(connection.tenant, 'acme');
    assert.equal(connection.portal_id, fake.ready.portals.find((p) => p.name === 'Acme Inc').id);
    assert.equal(connection.status, 'connected');
    assert.equal(connection.account_type, 'STANDARD');
    await page.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
