using System.Net;
using System.Net.Sockets;

namespace Crm.TestSupport;

/// <summary>
/// A loopback TCP relay to one of the shared servers, which a test can cut and restore: the service
/// under test sees its server go away (connections reset, new ones refused) while the shared server,
/// which other tests use, keeps running.
/// </summary>
public sealed class TcpRelay : IAsyncDisposable
{
    private readonly IPEndPoint _target;
    private readonly List<TcpClient> _connections = [];
    private TcpListener? _listener;
    private Task _accepting = Task.CompletedTask;

    public TcpRelay(string targetHost, int targetPort)
    {
        _target = new IPEndPoint(IPAddress.Parse(targetHost == "localhost" ? "127.0.0.1" : targetHost), targetPort);
        Port = TestServers.FreePort();
        Open();
    }

    public int Port { get; }

    /// <summary>Accepts connections again (on the same port).</summary>
    public void Open()
    {
        if (_listener is not null) return;
        _listener = new TcpListener(IPAddress.Loopback, Port);
        _listener.Start();
        _accepting = AcceptAsync(_listener);
    }

    /// <summary>Refuses new connections and resets every open one.</summary>
    public async Task CutAsync()
    {
        if (_listener is null) return;
        _listener.Stop();
        _listener = null;
        await _accepting;
        lock (_connections)
        {
            foreach (var c in _connections)
            {
                if (c.Client is { } socket) socket.LingerState = new LingerOption(true, 0); // reset, not a polite close
                c.Dispose();
            }
            _connections.Clear();
        }
    }

    private async Task AcceptAsync(TcpListener listener)
    {
        while (true)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }
            var server = new TcpClient();
            try
            {
                await server.ConnectAsync(_target);
            }
            catch (SocketException)
            {
                client.Dispose();
                server.Dispose();
                continue;
            }
            lock (_connections)
            {
                _connections.Add(client);
                _connections.Add(server);
            }
            _ = PumpAsync(client, server);
            _ = PumpAsync(server, client);
        }
    }

    private static async Task PumpAsync(TcpClient from, TcpClient to)
    {
        try
        {
            await from.GetStream().CopyToAsync(to.GetStream());
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public async ValueTask DisposeAsync() => await CutAsync();
}
