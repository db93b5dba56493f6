import { afterEach, describe, expect, it } from 'vitest';
import { createRunway } from '../../lib/clients/runway.js';
import { DEMO_KEYS, closeHarnesses, startHarness } from '../support/harness.js';
import { jpeg } from '../support/images.js';

afterEach(closeHarnesses);

/**
 * Runway's ephemeral upload (contract §2.2), for an image too big for a data URI. Prepared
 * photos always fit one; the client keeps the upload for images that do not.
 */
describe('the Runway client uploading an image too big for a data URI', () => {
  it('gets a runway:// URI that a create accepts, after a multipart POST of every field and the file', async () => {
    const harness = await startHarness();
    const runway = createRunway({ baseUrl: harness.sandbox.runwayApiUrl, apiKey: DEMO_KEYS.runway, timeoutMs: 10_000 });
    const photo = jpeg({ width: 320, height: 240, paddingBytes: 4_500_000 });

    const uri = await runway.uploadEphemeral('big.jpg', new Uint8Array(photo), 'image/jpeg');

    expect(uri).toMatch(/^runway:\/\//);
    expect(harness.sandbox.runway.uploads()).toEqual([{ runwayUri: uri, filename: 'big.jpg', bytes: photo.length }]);
    const created = await runway.createTask({ model: 'gen4_turbo', promptImage: uri, ratio: '1104:832', duration: 5 });
    expect(harness.sandbox.runway.task(created.id)?.promptImageKind).toBe('runway');
    expect(created.estimatedCredits).toBe(25);
  });
});
