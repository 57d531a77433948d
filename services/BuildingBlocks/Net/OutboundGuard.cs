using System.Net;
using System.Net.Sockets;

namespace Crm.BuildingBlocks.Net;

/// <summary>
/// Keeps connections to addresses a tenant names (provider base URLs, SMTP hosts, webhooks to come) off the
/// platform's own network: loopback, private (RFC 1918, CGNAT 100.64/10, IPv6 unique-local fc00::/7),
/// link-local (169.254/16 with the cloud metadata endpoint, fe80::/10), unspecified, multicast, broadcast,
/// and the IPv4-mapped and NAT64/6to4 IPv6 forms of these.
/// </summary>
/// <remarks>
/// The check is made on every connection, on the addresses the guard resolved itself and then connects
/// to, so a name that resolves to a public address at validation time and to 169.254.169.254 at send time
/// (DNS rebinding) still never reaches the latter. HTTP redirects are not followed (a provider's 3xx is its
/// answer, not a second destination). An operator may allow private addresses
/// (<c>Delivery:AllowPrivateProviderAddresses</c>) for a self-hosted relay or the loopback fakes of tests.
/// </remarks>
public sealed class OutboundGuard(bool allowPrivateAddresses)
{
    public bool AllowsPrivateAddresses { get; } = allowPrivateAddresses;

    /// <returns>null when a connection to <paramref name="address"/> is allowed, otherwise why not.</returns>
    public string? Refusal(IPAddress address) => AllowsPrivateAddresses ? null : Classify(address);

    /// <summary>Why a tenant-named address must not be connected to (null: a public unicast address).</summary>
    public static string? Classify(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6) return Classify(address.MapToIPv4());
        if (address.AddressFamily == AddressFamily.InterNetwork) return ClassifyV4(address.GetAddressBytes());
        if (address.AddressFamily != AddressFamily.InterNetworkV6) return "not an IP address";
        var b = address.GetAddressBytes();
        if (address.Equals(IPAddress.IPv6None)) return "unspecified";
        if (IPAddress.IsLoopback(address)) return "loopback";
        if (b[0] == 0xff) return "multicast";
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "link-local";
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return "site-local";
        if ((b[0] & 0xfe) == 0xfc) return "unique-local (private)";
        // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address that a
        // gateway may forward to: judged by that address.
        if (b.AsSpan(0, 12).IndexOfAnyExcept((byte)0) < 0) return ClassifyV4(b[12..]) ?? "IPv4-compatible IPv6";
        if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b.AsSpan(4, 8).IndexOfAnyExcept((byte)0) < 0) return ClassifyV4(b[12..]);
        if (b[0] == 0x20 && b[1] == 0x02) return ClassifyV4(b[2..6]);
        return null;
    }

    private static string? ClassifyV4(byte[] b) => b switch
    {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [127, ..] => "loopback",
        [10, ..] => "private (10/8)",
        [172, >= 16 and <= 31, ..] => "private (172.16/12)",
        [192, 168, ..] => "private (192.168/16)",
        [100, >= 64 and <= 127, ..] => "shared address space (100.64/10)",
        [169, 254, ..] => "link-local (169.254/16, cloud metadata)",
        [192, 0, 0, ..] => "IETF protocol assignments (192.0.0/24)",
        [198, 18 or 19, ..] => "benchmarking (198.18/15)",
        [>= 224 and <= 239, ..] => "multicast",
        [>= 240, ..] => "reserved or broadcast",
        _ => null,
    };

    /// <summary>
    /// For validating a setting when it is saved: a host that is an address literal (or <c>localhost</c>) and is
    /// not allowed. Names are judged again when connecting, on what they resolve to then.
    /// </summary>
    public string? LiteralRefusal(string host)
    {
        if (AllowsPrivateAddresses) return null;
        var bare = host.Trim('[', ']');
        if (string.Equals(bare, "localhost", StringComparison.OrdinalIgnoreCase) || bare.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
            return $"{host} is loopback";
        return IPAddress.TryParse(bare, out var address) && Classify(address) is { } why ? $"{host} is {why}" : null;
    }

    /// <summary>Resolves <paramref name="host"/> and keeps the addresses a connection may go to.</summary>
    /// <exception cref="OutboundAddressRefusedException">Every address the name resolves to is refused.</exception>
    public async Task<IPAddress[]> ResolveAsync(string host, CancellationToken ct)
    {
        var bare = host.Trim('[', ']');
        var addresses = IPAddress.TryParse(bare, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(bare, ct).ConfigureAwait(false);
        var allowed = addresses.Where(a => Refusal(a) is null).ToArray();
        if (allowed.Length == 0)
        {
            var refused = addresses.Select(a => $"{a} ({Classify(a)})");
            throw new OutboundAddressRefusedException(
                $"{host} resolves only to addresses outside the public internet: {string.Join(", ", refused)}");
        }
        return allowed;
    }

    /// <summary>Opens a TCP connection to one of the allowed addresses of <paramref name="host"/>.</summary>
    public async Task<Socket> ConnectAsync(string host, int port, CancellationToken ct)
    {
        var addresses = await ResolveAsync(host, ct).ConfigureAwait(false);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(addresses, port, ct).ConfigureAwait(false);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The primary handler of HTTP clients that call tenant-named URLs: guarded connects, no redirects.</summary>
    public SocketsHttpHandler CreateHttpHandler() => new()
    {
        AllowAutoRedirect = false,
        PooledConnectionLifetime = TimeSpan.FromMinutes(2), // a pooled connection is re-checked when it is replaced
        ConnectCallback = async (context, ct) =>
        {
            var socket = await ConnectAsync(context.DnsEndPoint.Host, context.DnsEndPoint.Port, ct).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        },
    };
}

/// <summary>A connection refused by <see cref="OutboundGuard"/>: a configuration problem, never worth retrying.</summary>
public sealed class OutboundAddressRefusedException(string message) : IOException(message);
