using System.Threading.RateLimiting;

namespace Crm.Gateway.Auth;

/// <summary>A token bucket per API key (per gateway replica): a runaway script slows down, others go on.</summary>
public sealed class KeyRateLimits(GatewayOptions options) : IDisposable
{
    private readonly PartitionedRateLimiter<string> _limiter = PartitionedRateLimiter.Create<string, string>(keyId =>
        RateLimitPartition.GetTokenBucketLimiter(keyId, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = options.Burst,
            TokensPerPeriod = options.RequestsPerSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
            AutoReplenishment = true,
        }));

    public bool TryTake(string keyId)
    {
        using var lease = _limiter.AttemptAcquire(keyId);
        return lease.IsAcquired;
    }

    public void Dispose() => _limiter.Dispose();
}
