import { createHash, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';

/**
 * `Upstash-Signature` values minted the way QStash mints them (contract §3): an HS256 JWT
 * keyed with the literal `sig_...` string, `iss: "Upstash"`, `sub` = the destination URL,
 * valid for five minutes, carrying `base64url(sha256(raw body))`. Every field can be bent
 * to build the forgeries a handler must refuse.
 */

export const QSTASH_SIGNATURE_LIFETIME_SECONDS = 300;

export interface QStashJwtInput {
  /** The literal signing key string (`sig_...`). */
  readonly signingKey: string;
  /** Destination URL exactly as published: becomes `sub`. */
  readonly url: string;
  /** The raw body the delivery carries. */
  readonly body: string | Uint8Array;
  /** Epoch seconds the token is issued at (default: now). */
  readonly issuedAtSeconds?: number;
  /** Default 300 s, as QStash. */
  readonly lifetimeSeconds?: number;
  /** Default `Upstash`. */
  readonly issuer?: string;
}

export function bodyHash(body: string | Uint8Array): string {
  return createHash('sha256').update(body).digest('base64url');
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export async function mintQStashJwt(input: QStashJwtInput): Promise<string> {
  const issuedAt = input.issuedAtSeconds ?? nowSeconds();
  return new SignJWT({ body: bodyHash(input.body) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(input.issuer ?? 'Upstash')
    .setSubject(input.url)
    .setIssuedAt(issuedAt)
    .setNotBefore(issuedAt)
    .setExpirationTime(issuedAt + (input.lifetimeSeconds ?? QSTASH_SIGNATURE_LIFETIME_SECONDS))
    .setJti(`jwt_${randomBytes(12).toString('hex')}`)
    .sign(new TextEncoder().encode(input.signingKey));
}
