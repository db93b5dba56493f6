import { describe, expect, it } from 'vitest';
import { PermanentError } from '../../lib/errors.js';
import { assertAllowedUrl, isLoopbackHost } from '../../lib/url-policy.js';

describe('isLoopbackHost', () => {
  it.each(['localhost', '127.0.0.1', '127.0.0.53', '127.255.255.254', '[::1]', '::1'])('counts %s as loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  it.each([
    '0.0.0.0',
    '10.0.0.1',
    '192.168.1.10',
    '128.0.0.1',
    '1.127.0.0.1',
    '127.0.0.1.example.com',
    'localhost.example.com',
    'mylocalhost',
    'example.com',
    '[::]',
    '',
  ])('does not count %j as loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });
});

describe('assertAllowedUrl with an https URL', () => {
  it.each([
    'https://abcd.supabase.co/storage/v1/object/sign/group-photos/g/p_original.jpg?token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln',
    'https://dnznrvs05pmza.cloudfront.net/out.mp4?_jwt=abc',
    'https://93.184.216.34/p.jpg',
    'https://localhost:8443/p.jpg',
    'HTTPS://EXAMPLE.COM/P.JPG',
  ])('lets %s through and returns it parsed', (raw) => {
    const url = assertAllowedUrl(raw, 'photo');
    expect(url).toBeInstanceOf(URL);
    expect(url.href).toBe(new URL(raw).href);
    expect(url.protocol).toBe('https:');
  });
});

describe('assertAllowedUrl with plain http', () => {
  it.each([
    ['http://127.0.0.1:4010/storage/v1/object/sign/a.jpg?token=x', '127.0.0.1'],
    ['http://localhost:3000/a', 'localhost'],
    ['http://LOCALHOST/a', 'localhost'],
    ['http://[::1]:3000/a', '[::1]'],
    ['http://127.1/a', '127.0.0.1'],
    ['http://0x7f000001/a', '127.0.0.1'],
    ['http://2130706433/a', '127.0.0.1'],
  ])('lets %s through: a loopback host (%s)', (raw, host) => {
    expect(assertAllowedUrl(raw, 'storage').hostname).toBe(host);
  });

  it.each([
    'http://example.com/p.jpg?token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln',
    'http://abcd.supabase.co/storage/v1/object/sign/p.jpg',
    'http://0.0.0.0:3000/p.jpg',
    'http://10.1.2.3/p.jpg',
    'http://169.254.169.254/latest/meta-data/',
    'http://127.0.0.1.nip.io/p.jpg',
    'http://localhost.example.com/p.jpg',
    'http://127.0.0.1@example.com/p.jpg',
    'http://example.com#@127.0.0.1/',
  ])('refuses %s, naming the stage and the scheme but not the URL', (raw) => {
    let caught: unknown;
    try {
      assertAllowedUrl(raw, 'photo');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(PermanentError);
    expect(caught).toMatchObject({ stage: 'photo', message: 'photo: refusing a http: URL (only https, or http on loopback)' });
  });
});

describe('assertAllowedUrl with other schemes', () => {
  it.each([
    ['ftp://127.0.0.1/p.jpg', 'ftp:'],
    ['file:///etc/passwd', 'file:'],
    ['ws://localhost:3000/', 'ws:'],
    ['gopher://127.0.0.1:70/', 'gopher:'],
    ['data:image/jpeg;base64,/9j/4AAQ', 'data:'],
    ['javascript:alert(1)', 'javascript:'],
    ['runway://ephemeral/3f1c0a52-93d8-4f0b-b6a1-2f5d8e0c9a31', 'runway:'],
  ])('refuses %s', (raw, scheme) => {
    expect(() => assertAllowedUrl(raw, 'output')).toThrow(
      new PermanentError('output', `output: refusing a ${scheme} URL (only https, or http on loopback)`),
    );
  });
});

describe('assertAllowedUrl with something that is not an absolute URL', () => {
  it.each(['', 'not a url', '/storage/v1/object/sign/p.jpg', '//example.com/p.jpg', 'http://', 'https://exa mple.com/'])(
    'refuses %j as an invalid URL from the service',
    (raw) => {
      expect(() => assertAllowedUrl(raw, 'storage')).toThrow(new PermanentError('storage', 'storage: the service returned an invalid URL'));
    },
  );
});
