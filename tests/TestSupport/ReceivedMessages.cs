using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.TestSupport;

/// <summary>
/// Every message an in-process service has finished receiving (its consumers done, batch consumers
/// included), by message id. A test that asserts a message changed nothing waits here until the
/// service has received it, instead of sleeping and hoping it was handled.
/// </summary>
public sealed class ReceivedMessages : IReceiveObserver, IDisposable
{
    private readonly Dictionary<Guid, int> _received = [];
    private readonly List<(Guid Id, int Times, TaskCompletionSource Done)> _waiters = [];
    private readonly ConnectHandle _handle;

    private ReceivedMessages(IBus bus) => _handle = bus.ConnectReceiveObserver(this);

    /// <summary>Starts observing the service's bus; dispose to stop.</summary>
    public static ReceivedMessages Observe(WebApplication app) => new(app.Services.GetRequiredService<IBus>());

    /// <summary>Completes once the message with that id has been received (and handled, or faulted) that many times.</summary>
    public async Task WaitAsync(Guid messageId, int times = 1, int seconds = 30)
    {
        Task done;
        lock (_received)
        {
            if (_received.GetValueOrDefault(messageId) >= times) return;
            var waiter = (messageId, times, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            _waiters.Add(waiter);
            done = waiter.Item3.Task;
        }
        try
        {
            await done.WaitAsync(TimeSpan.FromSeconds(seconds));
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"message {messageId} was not received {times} time(s) within {seconds} s (received {Count(messageId)})");
        }
    }

    public int Count(Guid messageId)
    {
        lock (_received) return _received.GetValueOrDefault(messageId);
    }

    private void Record(ReceiveContext context)
    {
        if (context.GetMessageId() is not { } id) return;
        lock (_received)
        {
            var times = _received[id] = _received.GetValueOrDefault(id) + 1;
            foreach (var waiter in _waiters.Where(w => w.Id == id && w.Times <= times).ToList())
            {
                waiter.Done.TrySetResult();
                _waiters.Remove(waiter);
            }
        }
    }

    public Task PreReceive(ReceiveContext context) => Task.CompletedTask;

    public Task PostReceive(ReceiveContext context)
    {
        Record(context);
        return Task.CompletedTask;
    }

    public Task PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType) where T : class => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception) where T : class => Task.CompletedTask;

    public Task ReceiveFault(ReceiveContext context, Exception exception)
    {
        Record(context);
        return Task.CompletedTask;
    }

    public void Dispose() => _handle.Disconnect();
}
