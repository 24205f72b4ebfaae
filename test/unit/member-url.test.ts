import { describe, expect, it } from 'vitest';
import { MemberDatabaseError, memberUrl } from '../../src/databases/placements.js';

describe('memberUrl (--workspaces-per-database)', () => {
  it('names the member database on the same server, keeping user, password and options', () => {
    expect(memberUrl('postgresql://app:s3cret@db:5433/ws?sslmode=require', 'ws_w2')).toBe('postgresql://app:s3cret@db:5433/ws_w2?sslmode=require');
    expect(memberUrl('postgres:///ws?host=/run/postgresql', 'ws_w1')).toBe('postgres:///ws_w1?host=/run/postgresql');
  });

  it('refuses the keyword form, saying what to write, without echoing it (it may hold a password)', () => {
    const attempt = () => memberUrl('host=db dbname=ws password=s3cret', 'ws_w1');
    expect(attempt).toThrow(MemberDatabaseError);
    expect(attempt).toThrow(/needs DATABASE_URL as a URL \(postgresql:\/\//);
    expect(attempt).not.toThrow(/s3cret/);
  });
});
