using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Crm.Delivery.Channels;

namespace Crm.Delivery.Tests.Channels;

/// <summary>Retry settings that keep the sender tests fast, and a record of every wait the sender asked for.</summary>
internal sealed class RecordedRetries
{
    private readonly ConcurrentQueue<TimeSpan> _delays = new();

    public RecordedRetries(int maxAttempts = 4)
    {
        Options = new RetryOptions
        {
            MaxAttempts = maxAttempts,
            BaseDelay = TimeSpan.FromMilliseconds(20),
            MaxDelay = TimeSpan.FromMilliseconds(100),
            MaxRetryAfter = TimeSpan.FromSeconds(5),
            // Generous, so a loaded CI machine does not turn a slow answer into a timeout; the tests
            // about timeouts shorten it (Options is read at each send).
            RequestTimeout = TimeSpan.FromSeconds(15),
        };
        // Waits are recorded at their full length but slept for at most 10 ms, so a Retry-After of
        // seconds is checked without the test taking seconds.
        Policy = new RetryPolicy(Options, (delay, ct) =>
        {
            _delays.Enqueue(delay);
            return Task.Delay(delay < TimeSpan.FromMilliseconds(10) ? delay : TimeSpan.FromMilliseconds(10), ct);
        });
    }

    public RetryOptions Options { get; }

    public RetryPolicy Policy { get; }

    public IReadOnlyList<TimeSpan> Delays => _delays.ToArray();
}

internal static class Ports
{
    /// <summary>A loopback port that nothing listens on (bound once by us, then released).</summary>
    public static int Closed()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
