using Crm.BuildingBlocks.Data;
using System.Globalization;
using Crm.Delivery.Features.Policies;
using Dapper;
using Npgsql;
using StackExchange.Redis;

namespace Crm.Delivery.Pipeline;

/// <summary>
/// Frequency caps, reserved atomically for all of a message's rules in one Lua script. Each rule is
/// a sorted set of message ids scored by reservation time, under the contact's hash tag
/// ({t:tenant:c:contact}) so every key a script touches sits in one Redis Cluster slot.
///
/// Redis is the fast path, PostgreSQL the truth (messages.cap_reserved_at is the ledger). Every rule
/// set carries a generation member, written when it was loaded from the ledger; a set without one
/// (Redis restarted empty, or evicted the key) is loaded back before any decision. After recording a
/// reservation in the ledger the caller confirms the generations are unchanged; if a set was lost
/// and reloaded in between (the reload may have missed this reservation) the decision is taken
/// again. So no customer is over-messaged, across replicas and restarts.
/// </summary>
public sealed class FrequencyCaps(IConnectionMultiplexer redis, TenantDb db, DeliveryOptions options)
{
    private static readonly TimeSpan LedgerHorizon = TimeSpan.FromDays(30);

    // Each rule set carries a generation member scored +inf, written when the set was loaded from the
    // ledger. A set without one (Redis restarted, or evicted the key) must be loaded before deciding.
    // KEYS: the rule sets. ARGV: now (ms), member, rule count, then limit and window (ms) per rule.
    // Returns {1, generations} reserved, {0, rule index, retry-after ms} denied, {-1} a set is not loaded.
    private const string ReserveScript = """
        local n = tonumber(ARGV[3])
        local now = tonumber(ARGV[1])
        local member = ARGV[2]
        local generations = ''
        for i = 1, n do
          local g = redis.call('ZRANGEBYSCORE', KEYS[i], '+inf', '+inf')
          if #g == 0 then return {-1} end
          generations = generations .. g[1]
        end
        for i = 1, n do
          local limit = tonumber(ARGV[2 + 2 * i])
          local window = tonumber(ARGV[3 + 2 * i])
          redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
          if not redis.call('ZSCORE', KEYS[i], member) and redis.call('ZCARD', KEYS[i]) - 1 >= limit then
            local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
            return {0, i, tonumber(oldest[2]) + window - now}
          end
        end
        for i = 1, n do
          redis.call('ZADD', KEYS[i], now, member)
          redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + 2 * i]))
        end
        return {1, generations}
        """;

    // Loads the sets that have no generation; a set that has one is never rebuilt (it may hold
    // reservations not yet in the ledger). KEYS: the rule sets. ARGV: rule count, generation, then per
    // rule: ttl (ms), entry count, (score, member)...
    private const string LoadScript = """
        local n = tonumber(ARGV[1])
        local a = 3
        for i = 1, n do
          local ttl = tonumber(ARGV[a])
          local count = tonumber(ARGV[a + 1])
          a = a + 2
          local loaded = #redis.call('ZRANGEBYSCORE', KEYS[i], '+inf', '+inf') > 0
          if not loaded then
            redis.call('ZADD', KEYS[i], '+inf', '~gen:' .. ARGV[2])
          end
          for j = 1, count do
            if not loaded then redis.call('ZADD', KEYS[i], ARGV[a], ARGV[a + 1]) end
            a = a + 2
          end
          if not loaded then redis.call('PEXPIRE', KEYS[i], ttl) end
        end
        return 1
        """;

    /// <summary>Reading a set's generation(s), to confirm a decision still stands.</summary>
    private const string GenerationScript = """
        local generations = ''
        for i = 1, #KEYS do
          local g = redis.call('ZRANGEBYSCORE', KEYS[i], '+inf', '+inf')
          if #g == 0 then return false end
          generations = generations .. g[1]
        end
        return generations
        """;

    public sealed record Check(TenantPolicy Policy, Guid ContactId, Guid MessageId, IReadOnlyList<CapRule> Rules, DateTimeOffset Now);

    public sealed record Result(bool Allowed, CapRule? DeniedBy = null, TimeSpan RetryAfter = default, string? Generation = null);

    /// <summary>Decides a batch of reservations, pipelined: one round trip for the whole batch.</summary>
    public async Task<IReadOnlyList<Result>> ReserveAsync(IReadOnlyList<Check> checks)
    {
        var results = new Result?[checks.Count];
        var pending = new List<int>();
        for (var i = 0; i < checks.Count; i++)
        {
            if (checks[i].Rules.Count == 0) results[i] = new Result(true);
            else pending.Add(i);
        }
        var database = redis.GetDatabase();
        for (var round = 0; pending.Count > 0; round++)
        {
            if (round == 3) throw new InvalidOperationException("Frequency caps could not be loaded into Redis.");
            var calls = pending.Select(i => database.ScriptEvaluateAsync(ReserveScript, RuleKeys(checks[i]), ReserveArgs(checks[i]))).ToArray();
            await Task.WhenAll(calls);
            var toLoad = new List<int>();
            for (var k = 0; k < pending.Count; k++)
            {
                var i = pending[k];
                var reply = (RedisResult[])calls[k].Result!;
                switch ((int)reply[0])
                {
                    case 1:
                        results[i] = new Result(true, Generation: (string?)reply[1]);
                        break;
                    case 0:
                        results[i] = new Result(false, checks[i].Rules[(int)reply[1] - 1], TimeSpan.FromMilliseconds(Math.Max(1, (long)reply[2])));
                        break;
                    default:
                        toLoad.Add(i);
                        break;
                }
            }
            // By policy (a tenant's rules as this batch read them): its rule sets are the ones loaded.
            foreach (var group in toLoad.Select(i => checks[i]).GroupBy(c => (c.Policy, c.Now)))
                await LoadLedgersAsync(group.Key.Policy, [.. group.Select(c => c.ContactId).Distinct()], group.Key.Now);
            pending = toLoad;
        }
        return results!;
    }

    /// <summary>
    /// Call after the reservation is recorded in the ledger: true if Redis kept its sets since the
    /// decision; otherwise the decision is taken again (now that the ledger has this reservation).
    /// </summary>
    public async Task<Result> ConfirmAsync(Check check, Result reserved)
    {
        if (check.Rules.Count == 0) return reserved;
        var generation = (string?)await redis.GetDatabase().ScriptEvaluateAsync(GenerationScript, RuleKeys(check));
        if (generation is not null && generation == reserved.Generation) return reserved;
        return (await ReserveAsync([check]))[0];
    }

    /// <summary>Gives a reservation back (the message was not sent). The ledger entry is cleared by the caller.</summary>
    public async Task ReleaseAsync(TenantPolicy policy, Guid contactId, Guid messageId, IReadOnlyList<CapRule> rules)
    {
        var database = redis.GetDatabase();
        await Task.WhenAll(rules.Select(r => database.SortedSetRemoveAsync(RuleKey(policy.TenantId, contactId, r), messageId.ToString("N"))));
    }

    /// <summary>
    /// Loads the sets of contacts Redis has no sets for (new to the caps, expired, or Redis restarted):
    /// one ledger query and one pipelined round trip for all of them, since a campaign's batch is
    /// mostly such contacts.
    /// </summary>
    private async Task LoadLedgersAsync(TenantPolicy policy, Guid[] contactIds, DateTimeOffset now)
    {
        List<(Guid ContactId, Guid MessageId, DateTime ReservedAt, string Channel, string Purpose, string? Category)> entries;
        await using (var scope = await db.BeginAsync(policy.TenantId))
        {
            entries = (await scope.Connection.QueryAsync<(Guid, Guid, DateTime, string, string, string?)>("""
                SELECT contact_id, message_id, cap_reserved_at, channel, purpose, category FROM messages
                WHERE tenant_id = @tenant AND contact_id = ANY(@contactIds) AND cap_reserved_at > @since AND NOT ignore_caps
                """, new { tenant = policy.TenantId, contactIds, since = (now - LedgerHorizon).UtcDateTime })).AsList();
        }
        var byContact = entries.ToLookup(e => e.ContactId);
        var rules = AllRules(policy);
        var database = redis.GetDatabase();
        await Task.WhenAll(contactIds.Select(contactId =>
        {
            var keys = rules.Select(r => (RedisKey)RuleKey(policy.TenantId, contactId, r)).ToArray();
            var args = new List<RedisValue> { rules.Count, Guid.NewGuid().ToString("N") };
            foreach (var rule in rules)
            {
                var counted = byContact[contactId].Where(e => rule.Applies(e.Channel, e.Purpose, e.Category) && e.ReservedAt > (now - rule.Window).UtcDateTime).ToList();
                args.Add((long)Math.Max(rule.Window.TotalMilliseconds, 60_000));
                args.Add(counted.Count);
                foreach (var e in counted)
                {
                    args.Add(new DateTimeOffset(DateTime.SpecifyKind(e.ReservedAt, DateTimeKind.Utc)).ToUnixTimeMilliseconds());
                    args.Add(e.MessageId.ToString("N"));
                }
            }
            return database.ScriptEvaluateAsync(LoadScript, keys, [.. args]);
        }));
    }

    /// <summary>
    /// Forgets an erased contact's cap sets (one round trip: they share a hash slot). Sets of rules the
    /// tenant has since changed expire with their window; they hold only message ids and times.
    /// </summary>
    public Task ForgetAsync(TenantPolicy policy, Guid contactId) =>
        redis.GetDatabase().KeyDeleteAsync([.. AllRules(policy).Select(r => (RedisKey)RuleKey(policy.TenantId, contactId, r))]);

    /// <summary>Every rule of the tenant, so that one load serves all of the contact's future checks.</summary>
    private static List<CapRule> AllRules(TenantPolicy policy) =>
        [.. policy.Rules, policy.TransactionalSafetyRule];

    private RedisKey[] RuleKeys(Check c) => [.. c.Rules.Select(r => (RedisKey)RuleKey(c.Policy.TenantId, c.ContactId, r))];

    /// <summary>The script, keys and arguments of one decision, for benchmarking the same call with redis-benchmark.</summary>
    public (string Script, IReadOnlyList<string> Keys, IReadOnlyList<string> Arguments) Describe(Check c) =>
        (ReserveScript, RuleKeys(c).Select(k => k.ToString()).ToList(), ReserveArgs(c).Select(a => a.ToString()).ToList());

    private static RedisValue[] ReserveArgs(Check c)
    {
        var args = new RedisValue[3 + 2 * c.Rules.Count];
        args[0] = c.Now.ToUnixTimeMilliseconds();
        args[1] = c.MessageId.ToString("N");
        args[2] = c.Rules.Count;
        for (var i = 0; i < c.Rules.Count; i++)
        {
            args[3 + 2 * i] = c.Rules[i].Limit;
            args[4 + 2 * i] = (long)c.Rules[i].Window.TotalMilliseconds;
        }
        return args;
    }

    private string ContactTag(string tenant, Guid contactId) => $"{options.RedisKeyPrefix}{{t:{tenant}:c:{contactId:N}}}";

    /// <summary>A rule's key names its limit and window too, so changed rules never read stale sets.</summary>
    private string RuleKey(string tenant, Guid contactId, CapRule rule) =>
        string.Create(CultureInfo.InvariantCulture, $"{ContactTag(tenant, contactId)}:cap:{rule.RuleId}:{rule.Limit}:{(long)rule.Window.TotalSeconds}");
}
