using System.Collections.Concurrent;
using Crm.Contacts.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Gateway.Auth;

/// <summary>
/// When each API key was last used, for its <c>last_used_at</c>. A request only notes the time in
/// memory; every <see cref="GatewayOptions.KeyUseFlushInterval"/> the keys used since are sent to
/// Contacts in one call (one UPDATE there), so the database sees a write per key per interval, not
/// per request. What a failed flush held is kept for the next one; the last flush runs at shutdown.
/// </summary>
public sealed class ApiKeyUsage(GatewayOptions options, ContactsChannel contacts, TimeProvider clock, ILogger<ApiKeyUsage> logger) : BackgroundService
{
    /// <summary>Keys noted at most (a flush sends them all, in calls of up to 10,000); beyond it, new keys wait for the next interval.</summary>
    private const int Limit = 100_000;
    private const int PerCall = 10_000;
    private ConcurrentDictionary<string, DateTimeOffset> _used = new(StringComparer.Ordinal);

    public void Record(string keyId)
    {
        var used = _used;
        if (used.Count >= Limit && !used.ContainsKey(keyId)) return;
        used[keyId] = clock.GetUtcNow(); // the latest use wins; the exact order of racing writes does not matter
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.KeyUseFlushInterval, clock);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                await FlushAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await FlushAsync(cancellationToken);
    }

    private async Task FlushAsync(CancellationToken ct)
    {
        if (_used.IsEmpty) return;
        var batch = Interlocked.Exchange(ref _used, new ConcurrentDictionary<string, DateTimeOffset>(StringComparer.Ordinal));
        var client = new WorkspaceService.WorkspaceServiceClient(contacts.Channel);
        foreach (var chunk in batch.Chunk(PerCall))
        {
            var request = new RecordApiKeyUseRequest();
            request.Uses.AddRange(chunk.Select(u => new ApiKeyUse { KeyId = u.Key, UsedAt = Timestamp.FromDateTimeOffset(u.Value) }));
            try
            {
                await client.RecordApiKeyUseAsync(request, contacts.GatewayCredentials(), deadline: clock.GetUtcNow().UtcDateTime.AddSeconds(10), cancellationToken: ct);
            }
            catch (RpcException e)
            {
                // Kept for the next flush, unless a newer use of the key was noted meanwhile.
                logger.LogWarning(e, "Could not record the use of {Count} API keys ({Status}); retrying with the next flush", chunk.Length, e.StatusCode);
                foreach (var (keyId, at) in chunk)
                    _used.AddOrUpdate(keyId, at, (_, newer) => newer > at ? newer : at);
            }
        }
    }
}
