/**
 * An address where nothing listens, so a connection is refused at once: port 1 on loopback
 * (tcpmux, never served here). A port freed by closing a test server is no such address:
 * another test's server can take it before it is used.
 */
export const REFUSED_URL = 'http://127.0.0.1:1';
