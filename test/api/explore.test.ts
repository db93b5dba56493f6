import { afterEach, it } from 'vitest';
import { closeHarnesses, seedItem, startHarness } from '../support/harness.js';

afterEach(closeHarnesses);

it('explores', async () => {
  const h = await startHarness({ items: [seedItem('landscape.jpg'), seedItem('portrait-exif6.jpg', { frame_num: 73 })] });
  const t0 = Date.now();
  const a = await h.cron();
  console.log(Date.now() - t0, JSON.stringify(a.json, null, 1));
  for (const r of h.requests()) console.log(r.service, r.method, r.path, JSON.stringify(r.json)?.slice(0, 200), JSON.stringify(r.headers));
  for (const m of h.messages()) console.log(m.url, m.body, JSON.stringify(m.headers), m.firstDeliveryAt - m.publishedAt);
  const c = await h.cron('?check=1');
  console.log(JSON.stringify(c.json, null, 1));
});
