// HubSpot's official Node SDK (@hubspot/api-client) against the standalone fake (`hubconnect fake`): every call
// succeeds or fails as it would against HubSpot. Run: `npm ci && npm test` here, after `cargo build --features cli`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import hubspot from '@hubspot/api-client';
import { startFake } from './fake.mjs';

let fake;
let app;
const scopes = 'oauth crm.objects.contacts.read crm.objects.contacts.write';

before(async () => {
  fake = await startFake();
  app = { id: fake.ready.client_id, secret: fake.ready.client_secret, redirect: fake.ready.redirect_uris[0] };
});
after(async () => assert.equal(await fake.stop(), 0));

/** The SDK's authorization URL, sent to the fake instead of app.hubspot.com; the code from the redirect. */
async function authorize(state) {
  const url = new hubspot.Client().oauth.getAuthorizationUrl(app.id, app.redirect, scopes, undefined, state);
  assert.ok(url.startsWith('https://app.hubspot.com/oauth/authorize?'), url);
  const answer = await fetch(url.replace('https://app.hubspot.com', fake.base), { redirect: 'manual' });
  assert.equal(answer.status, 302);
  const callback = new URL(answer.headers.get('location'));
  assert.equal(callback.origin + callback.pathname, app.redirect);
  assert.equal(callback.searchParams.get('state'), state);
  return callback.searchParams.get('code');
}

async function rejects(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('the call succeeded');
}

test('OAuth: authorization URL, code exchange, token metadata, refresh, revoke', async () => {
  const oauth = new hubspot.Client({ basePath: fake.base }).oauth;
  const code = await authorize('state-1');
  const tokens = await oauth.tokensApi.create('authorization_code', code, app.redirect, app.id, app.secret);
  assert.equal(tokens.tokenType, 'bearer');
  assert.equal(tokens.expiresIn, 1800);
  assert.ok(tokens.accessToken && tokens.refreshToken);

  const info = await oauth.accessTokensApi.get(tokens.accessToken);
  assert.equal(info.hubId, 62515);
  assert.equal(info.user, 'admin@example.com');
  assert.deepEqual([...info.scopes].sort(), scopes.split(' ').sort());
  const refreshInfo = await oauth.refreshTokensApi.get(tokens.refreshToken);
  assert.equal(refreshInfo.hubId, 62515);
  assert.equal(refreshInfo.clientId, app.id);

  const refreshed = await oauth.tokensApi.create('refresh_token', undefined, undefined, app.id, app.secret,
    tokens.refreshToken);
  assert.notEqual(refreshed.accessToken, tokens.accessToken);

  // A code is single use: HubSpot's BAD_AUTH_CODE.
  const reused = await rejects(oauth.tokensApi.create('authorization_code', code, app.redirect, app.id, app.secret));
  assert.equal(reused.code, 400);
  assert.equal(reused.body.status, 'BAD_AUTH_CODE');

  await oauth.refreshTokensApi.archive(tokens.refreshToken);
  const dead = await rejects(oauth.tokensApi.create('refresh_token', undefined, undefined, app.id, app.secret,
    tokens.refreshToken));
  assert.equal(dead.code, 400);
  assert.equal(dead.body.status, 'BAD_REFRESH_TOKEN');
  // The access token lives on until it expires, as on HubSpot.
  assert.equal((await oauth.accessTokensApi.get(refreshed.accessToken)).hubId, 62515);
});

test('CRM contacts: page, get, search, create', async () => {
  const oauth = new hubspot.Client({ basePath: fake.base }).oauth;
  const tokens = await oauth.tokensApi.create('authorization_code', await authorize('state-2'), app.redirect, app.id,
    app.secret);
  const client = new hubspot.Client({ accessToken: tokens.accessToken, basePath: fake.base });
  const contacts = client.crm.contacts;

  const page = await contacts.basicApi.getPage(2, undefined, ['email', 'firstname']);
  assert.equal(page.results.length, 2);
  assert.ok(page.paging.next.after);
  const first = page.results[0];
  assert.ok(first.properties.email);

  const one = await contacts.basicApi.getById(first.id, ['email']);
  assert.equal(one.id, first.id);
  assert.equal(one.properties.email, first.properties.email);

  const found = await contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: 'email', operator: 'EQ', value: first.properties.email }] }],
    properties: ['email'],
    limit: 10,
  });
  assert.equal(found.total, 1);
  assert.equal(found.results[0].id, first.id);

  const created = await contacts.basicApi.create({ properties: { email: 'sdk@example.com', firstname: 'Sdk' } });
  assert.equal(created.properties.email, 'sdk@example.com');
  assert.equal((await contacts.basicApi.getById(created.id, ['firstname'])).properties.firstname, 'Sdk');
  const duplicate = await rejects(contacts.basicApi.create({ properties: { email: 'sdk@example.com' } }));
  assert.equal(duplicate.code, 409);
  const missing = await rejects(contacts.basicApi.getById('999999999'));
  assert.equal(missing.code, 404);
});

test('the SDK on 401, 403, 429 and 500', async () => {
  const oauth = new hubspot.Client({ basePath: fake.base }).oauth;
  const tokens = await oauth.tokensApi.create('authorization_code', await authorize('state-3'), app.redirect, app.id,
    app.secret);

  const stranger = new hubspot.Client({ accessToken: 'CN-not-a-token', basePath: fake.base });
  const unauthorized = await rejects(stranger.crm.contacts.basicApi.getPage());
  assert.equal(unauthorized.code, 401);
  assert.equal(unauthorized.body.category, 'INVALID_AUTHENTICATION');

  const client = new hubspot.Client({ accessToken: tokens.accessToken, basePath: fake.base });
  const forbidden = await rejects(client.crm.companies.basicApi.getPage());
  assert.equal(forbidden.code, 403);
  assert.equal(forbidden.body.category, 'MISSING_SCOPES');

  // HubSpot's ten-secondly limit, switched on through the control API: the SDK without retries reports it.
  let r = await fake.control('scenario', { failures: [{ endpoint: 'crm_list', failure: 'too_many_requests', times: 1 }] });
  assert.equal(r.status, 200);
  const limited = await rejects(client.crm.contacts.basicApi.getPage());
  assert.equal(limited.code, 429);
  assert.equal(limited.body.policyName, 'TEN_SECONDLY_ROLLING');
  assert.equal(limited.headers['x-hubspot-ratelimit-remaining'], '0');
  assert.equal((await client.crm.contacts.basicApi.getPage()).results.length > 0, true);

  // With retries, the SDK waits out the secondly search limit and a 500, then succeeds.
  const patient = new hubspot.Client({ accessToken: tokens.accessToken, basePath: fake.base, numberOfApiCallRetries: 2 });
  const secondly = JSON.stringify({ status: 'error', message: 'You have reached your secondly limit.',
    errorType: 'RATE_LIMIT', policyName: 'SECONDLY' });
  r = await fake.control('scenario', { failures: [
    { endpoint: 'crm_search', failure: 'status', status: 429, content_type: 'application/json', body: secondly },
    { endpoint: 'crm_get', failure: 'server_error' },
  ] });
  assert.equal(r.status, 200);
  const found = await patient.crm.contacts.searchApi.doSearch({ filterGroups: [], limit: 1 });
  assert.equal(found.results.length, 1);
  assert.equal((await patient.crm.contacts.basicApi.getById(found.results[0].id)).id, found.results[0].id);

  // A malformed scenario is refused, naming the field.
  r = await fake.control('scenario', { failures: [{ endpoint: 'crm_list', failure: 'sometimes' }] });
  assert.equal(r.status, 400);
  assert.equal(r.body.field, 'failures[0].failure');

  const counts = await fake.control('requests');
  assert.equal(counts.body.counts['token:authorization_code'] >= 3, true);
  assert.ok(!JSON.stringify(counts.body).includes(tokens.accessToken));
});
