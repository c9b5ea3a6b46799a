// k6 load test of the feed path: each iteration fetches a user's first page of reels, then follows
// next_cursor for one or two more pages, as a client scrolling the feed does.
//
// Tokens: one or more access tokens, comma-separated, spread over the virtual users. Against a
// development or staging service (embedded mode or seeded demo catalog), mint a few with
//
//   TOKENS=$(for n in $(seq 1 50); do video-ranking-service dev-token --demo-user "$n" --ttl 1h; done | paste -sd,)
//
// (run it with the service's DATA_DIR, where the development signing key lives), then
//
//   k6 run -e BASE_URL=http://localhost:8000 -e TOKENS="$TOKENS" deploy/loadtest/feed_load_test.js
//
// TOKEN works instead of TOKENS for a single user; LIMIT sets the page size (default 10). A
// service started with RATE_LIMIT_PER_SECOND=0 does not throttle the users; otherwise keep
// 10 VUs spread over enough tokens to stay under the per-user limit.
import http from 'k6/http';
import { check, sleep } from 'k6';

export const options = {
  vus: 10,
  duration: '30s',
  thresholds: {
    http_req_duration: ['p(50)<100', 'p(95)<300', 'p(99)<500'],
    http_req_failed: ['rate<0.001'],
  },
};

const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8000').replace(/\/+$/, '');
const LIMIT = __ENV.LIMIT || '10';
const TOKENS = (__ENV.TOKENS || __ENV.TOKEN || '')
  .split(',')
  .map((t) => t.trim())
  .filter((t) => t.length > 0);

export function setup() {
  if (TOKENS.length === 0) {
    throw new Error('set TOKENS (comma-separated) or TOKEN: see the header of this script');
  }
}

function page(token, cursor) {
  let url = `${BASE_URL}/api/v1/reels?limit=${LIMIT}`;
  if (cursor) {
    url += `&cursor=${encodeURIComponent(cursor)}`;
  }
  const res = http.get(url, {
    headers: { Authorization: `Bearer ${token}` },
    tags: { name: cursor ? 'reels next page' : 'reels first page' },
  });
  let body = null;
  try {
    body = res.json();
  } catch (_) {
    body = null;
  }
  check(res, {
    'status is 200': (r) => r.status === 200,
    'videos is an array': () => body !== null && Array.isArray(body.videos),
    'next_cursor is present': () =>
      body !== null && (typeof body.next_cursor === 'string' || body.next_cursor === null),
  });
  return res.status === 200 && body !== null ? body : null;
}

export default function () {
  // The same virtual user keeps the same token, so its pages form one feed session.
  const token = TOKENS[(__VU - 1) % TOKENS.length];
  let body = page(token, null);
  const more = 1 + Math.floor(Math.random() * 2);
  for (let i = 0; i < more && body !== null && body.next_cursor; i++) {
    sleep(0.2);
    body = page(token, body.next_cursor);
  }
  sleep(0.5);
}
